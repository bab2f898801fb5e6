"""`meterguard replay` and `meterguard evaluate` through the CLI, as acceptance runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli import run_cli

METERS = """meter,service,nominal_v,transformer,role,generation
M1,3p4w,230,T1,customer,false
M2,3p4w,230,T1,customer,false
M3,1p2w,230,T1,customer,false
M4,1p2w,230,T1,customer,false
FDR,3p4w,230,T1,feeder,false
M5,3p4w,230,T2,customer,false
FDR2,3p4w,230,T2,feeder,false
"""


def _cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command as acceptance does: `python -m service.cli` in a process."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _alert(meter: str, kind: str, start: str) -> str:
    return json.dumps({"id": f"{meter}-{kind}", "meter": meter, "kind": kind, "start": start})


def test_evaluate_scores_hand_written_alerts(tmp_path: Path) -> None:
    (tmp_path / "meters.csv").write_text(METERS)
    # Each meter's first and last good reading span two days: 5 customers -> 10
    # customer meter-days (feeders not counted). A short row and a far-future row are bad
    # rows, as replay has them: neither crashes evaluate nor adds meter-days.
    rows = ["ts,meter,v1"]
    for meter in ("M1", "M2", "M3", "M4", "M5", "FDR", "FDR2"):
        rows.append(f"2026-01-05T00:00:00Z,{meter},230")
    rows.append("2026-01-06T00:00:00Z,M1")
    rows.append("2031-01-06T00:00:00Z,M2,230")
    for meter in ("M1", "M2", "M3", "M4", "M5", "FDR", "FDR2"):
        rows.append(f"2026-01-07T00:00:00Z,{meter},230")
    (tmp_path / "readings.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "labels.csv").write_text(
        "meter,kind,start,end,phase,magnitude\n"
        "M1,bypass,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,0.3\n"
        "M2,reversal,2026-01-05T10:00:00Z,2026-01-05T11:00:00Z,2,1\n"
        "M3,voltage_loss,2026-01-05T08:00:00Z,2026-01-05T09:00:00Z,1,0.5\n"
        "M4,comms_loss,2026-01-05T13:00:00Z,2026-01-05T14:00:00Z,,\n"
    )
    alerts = [
        _alert("M1", "imbalance", "2026-01-05T10:10:00Z"),  # detected, equivalent kind
        _alert("M2", "phase_shift", "2026-01-05T09:56:00Z"),  # 4 min early: still counts
        _alert("M3", "tamper", "2026-01-05T08:30:00Z"),  # detected, wrong diagnosis
        _alert("FDR", "energy_balance", "2026-01-05T10:30:00Z"),  # M1 on T1 at the time
        _alert("FDR2", "energy_balance", "2026-01-05T10:30:00Z"),  # nothing on T2: false
        _alert("M5", "bypass", "2026-01-05T20:00:00Z"),  # no label: false
        _alert("M2", "reversal", "2026-01-05T11:40:00Z"),  # 40 min after the end: false
    ]
    (tmp_path / "alerts.jsonl").write_text("\n".join(alerts) + "\n")
    done = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["incidents"], result["detected"], result["diagnosed"]) == (4, 3, 2)
    assert result["detection_recall"] == 0.75
    assert result["diagnosis_recall"] == 0.5
    assert result["alerts"] == 7
    assert result["false_alarms"] == 3
    assert result["precision"] == pytest.approx(4 / 7)
    assert result["meter_days"] == pytest.approx(10.0)
    assert result["all_meter_days"] == pytest.approx(14.0)
    assert result["bad_rows"] == 2
    assert result["false_alarms_per_1000_meter_days"] == pytest.approx(3000 / 10)
    kinds = result["per_kind"]
    assert kinds["bypass"]["median_latency_s"] == 600
    assert kinds["reversal"]["median_latency_s"] == -240
    assert kinds["voltage_loss"]["diagnosed"] == 0
    assert kinds["comms_loss"]["detected"] == 0
    assert kinds["energy_balance"]["false_alarms"] == 1
    assert kinds["reversal"]["alerts_per_detected_incident"] == 1.0
    text = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl"))
    last = text.stdout.strip().splitlines()[-1]
    assert last.startswith("detection recall 0.750, diagnosis recall 0.500, precision 0.571")


def test_evaluate_reports_the_time_to_raise_beside_the_onset_error(tmp_path: Path) -> None:
    (tmp_path / "meters.csv").write_text(METERS)
    (tmp_path / "labels.csv").write_text(
        "meter,kind,start,end,phase,magnitude\n"
        "M1,bypass,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,0.3\n"
        "M2,reversal,2026-01-05T10:00:00Z,2026-01-05T11:00:00Z,2,1\n"
        "M3,voltage_loss,2026-01-05T08:00:00Z,2026-01-05T09:00:00Z,1,0.5\n"
        "M4,consumption_drop,2026-01-05T13:00:00Z,2026-01-05T20:00:00Z,,0.5\n"
        "M5,tamper,2026-01-05T14:00:00Z,2026-01-05T15:00:00Z,,\n"
    )

    def alert(meter: str, kind: str, start: str, **raised: object) -> str:
        return json.dumps({"meter": meter, "kind": kind, "start": start, **raised})

    alerts = [
        alert("M1", "bypass", "2026-01-05T10:02:00Z", raised="2026-01-05T10:07:00Z"),
        # a second alert on the same incident: only the first detecting alert is timed
        alert("M1", "bypass", "2026-01-05T10:30:00Z", raised="2026-01-05T10:35:00Z"),
        alert("M2", "reversal", "2026-01-05T09:58:00Z", raised="2026-01-05T10:01:00Z"),
        # epoch seconds do as well as RFC 3339: 08:25
        alert("M3", "voltage_loss", "2026-01-05T08:10:00Z", raised=1767601500),
        alert("M4", "consumption_drop", "2026-01-05T13:00:00Z", raised="2026-01-05T16:00:00Z"),
        # an alert that does not say when it was raised counts for detection only
        alert("M5", "tamper", "2026-01-05T14:00:00Z"),
        alert("M5", "bypass", "2026-01-05T20:00:00Z", raised=None),
    ]
    (tmp_path / "alerts.jsonl").write_text("\n".join(alerts) + "\n")
    done = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    kinds = result["per_kind"]
    timing = {
        kind: (k["median_latency_s"], k["median_time_to_raise_s"], k["incidents_with_raise_time"])
        for kind, k in kinds.items()
        if k["incidents"]
    }
    assert timing == {
        "bypass": (120, 420, 1),
        "reversal": (-120, 60, 1),
        "voltage_loss": (600, 1500, 1),
        "consumption_drop": (0, 10800, 1),
        "tamper": (0, None, 0),
    }
    # The physics kinds together: onset errors -120, 0, 120, 600; raise times 60, 420, 1500.
    assert result["timing"]["physics"] == {
        "kinds": ["bypass", "reversal", "voltage_loss", "phase_shift", "tamper"],
        "detected": 4,
        "median_onset_error_s": 60,
        "incidents_with_raise_time": 3,
        "median_time_to_raise_s": 420,
    }
    assert result["timing"]["consumption_drop"]["median_time_to_raise_s"] == 10800
    text = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl")).stdout
    head = text.splitlines()[0]
    assert "onset error" in head
    assert "time to raise" in head
    assert "latency" not in text
    bypass_row = next(line for line in text.splitlines() if line.startswith("bypass "))
    assert "2.0 min" in bypass_row
    assert "7.0 min" in bypass_row
    assert (
        "physics kinds (bypass, reversal, voltage_loss, phase_shift, tamper): median onset "
        "error 1.0 min over 4 detected incidents, median time to raise 7.0 min over 3"
    ) in text
    assert "consumption_drop: median onset error 0.0 min over 1 detected incidents" in text


def _score_one_label(
    tmp_path: Path, label: str, alerts: list[str], in_column: str
) -> dict[str, Any]:
    (tmp_path / "meters.csv").write_text(METERS)
    (tmp_path / "readings.csv").write_text(
        "ts,meter,v1,in\n"
        f"2026-01-05T00:00:00Z,M1,230,{in_column}\n2026-01-06T00:00:00Z,M1,230,{in_column}\n"
    )
    (tmp_path / "labels.csv").write_text("meter,kind,start,end,phase,magnitude\n" + label)
    (tmp_path / "alerts.jsonl").write_text("\n".join(alerts) + "\n")
    done = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_evaluate_lists_each_incident_with_its_weekday_and_outcome(tmp_path: Path) -> None:
    (tmp_path / "meters.csv").write_text(METERS)
    # 2026-05-01 is a Friday, 2026-05-03 a Sunday.
    (tmp_path / "labels.csv").write_text(
        "meter,kind,start,end,phase,magnitude\n"
        "M1,consumption_drop,2026-05-01T14:00:00Z,2026-05-06T00:00:00Z,,0.5\n"
        "M2,consumption_drop,2026-05-03T19:30:00Z,,,not a number\n"
        "M3,voltage_loss,2026-05-03T08:00:00Z,2026-05-03T09:00:00Z,1,0.3\n"
    )
    alerts = [
        json.dumps(
            {
                "meter": "M1",
                "kind": "consumption_drop",
                "start": "2026-05-02T02:00:00Z",
                "raised": "2026-05-02T06:05:00Z",
            }
        ),
        json.dumps(
            {
                "meter": "M3",
                "kind": "tamper",
                "start": "2026-05-03T08:10:00Z",
                "raised": "2026-05-03T08:12:00Z",
            }
        ),
    ]
    (tmp_path / "alerts.jsonl").write_text("\n".join(alerts) + "\n")
    done = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl"), "--json")
    assert done.returncode == 0, done.stderr
    listed = {one["meter"]: one for one in json.loads(done.stdout)["per_incident"]}
    assert listed["M1"] == {
        "meter": "M1",
        "kind": "consumption_drop",
        "start": "2026-05-01T14:00:00Z",
        "end": "2026-05-06T00:00:00Z",
        "magnitude": 0.5,
        "detected": True,
        "diagnosed": True,
        "first_alert_kind": "consumption_drop",
        "onset_error_s": 12 * 3600.0,
        "time_to_raise_s": 16 * 3600.0 + 300.0,
    }
    # No alert: missed, with no end and a magnitude that is not a number left out.
    assert (listed["M2"]["detected"], listed["M2"]["end"], listed["M2"]["magnitude"]) == (
        False,
        None,
        None,
    )
    # Found by another kind: detected, not diagnosed.
    assert (listed["M3"]["detected"], listed["M3"]["diagnosed"]) == (True, False)
    assert listed["M3"]["time_to_raise_s"] == 720.0
    text = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl"), "--incidents")
    assert text.returncode == 0, text.stderr
    rows = {line.split()[0]: line for line in text.stdout.splitlines() if line.startswith("M")}
    assert "Fri 2026-05-01 14:00" in rows["M1"]
    assert "diagnosed" in rows["M1"]
    assert rows["M1"].rstrip().endswith("16.1 h")
    assert "Sun 2026-05-03 19:30" in rows["M2"]
    assert "MISSED" in rows["M2"]
    assert "detected" in rows["M3"]
    assert rows["M3"].rstrip().endswith("12 min")
    # Without --incidents the report is the per-kind table alone.
    plain = run_cli("evaluate", str(tmp_path), str(tmp_path / "alerts.jsonl")).stdout
    assert "MISSED" not in plain


@pytest.mark.parametrize(
    ("label", "alert_kind", "in_column", "diagnosed"),
    [
        ("M1,bypass,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,0.3", "imbalance", "", 1),
        # the meter measures its neutral current: an imbalance alert is no diagnosis
        ("M1,bypass,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,0.3", "imbalance", "4.2", 0),
        # a bypass of the whole meter (no phase) is not a one-phase bypass
        ("M1,bypass,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,,0.3", "imbalance", "", 0),
        ("M1,reversal,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,2,1", "phase_shift", "", 1),
        # the spec gives no reverse equivalences
        ("M1,imbalance,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,0.5", "bypass", "", 0),
        ("M1,phase_shift,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,25", "reversal", "", 0),
    ],
)
def test_diagnosis_accepts_only_the_equivalences_the_spec_gives(
    tmp_path: Path, label: str, alert_kind: str, in_column: str, diagnosed: int
) -> None:
    result = _score_one_label(
        tmp_path, label + "\n", [_alert("M1", alert_kind, "2026-01-05T10:05:00Z")], in_column
    )
    assert (result["detected"], result["diagnosed"]) == (1, diagnosed)


def test_duplicate_alerts_on_one_incident_show_per_kind(tmp_path: Path) -> None:
    label = "M1,bypass,2026-01-05T10:00:00Z,2026-01-05T12:00:00Z,1,0.3\n"
    alerts = [_alert("M1", "bypass", f"2026-01-05T1{h}:00:00Z") for h in (0, 1, 2)]
    alerts.append(_alert("M1", "tamper", "2026-01-05T10:30:00Z"))
    result = _score_one_label(tmp_path, label, alerts, "")
    assert result["per_kind"]["bypass"]["alerts_per_detected_incident"] == 4.0
    assert result["per_kind"]["bypass"]["diagnosing_alerts_per_diagnosed_incident"] == 3.0
    assert result["false_alarms"] == 0
    assert result["diagnosed"] == 1


def test_replay_counts_bad_rows_with_their_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "meters.csv").write_text(METERS)
    lines = ["meter,ts,p3,p1,p2,v1,events"]  # columns in any order, q and i absent
    for minute in range(12):
        ts = 1767571200 + 60 * minute
        stamp = str(ts) if minute % 2 else f"2026-01-05T00:{minute:02d}:00Z"
        lines.append(f"M2,{stamp},700,800,-600,231,")  # phase 2 runs backwards
        lines.append(f"M1,{stamp},700,800,600,,")  # blank v1: not measured, not bad
    lines.insert(3, "M1,1767571260,12,13")  # too few columns: line 4
    lines.insert(6, "M1,1767571320,abc,1,1,230,")  # not a number: line 7
    lines.insert(9, "")  # an empty line is skipped, not counted
    lines.insert(10, "NOPE,1767571380,1,1,1,230,")  # unknown meter: line 11
    lines.insert(12, "M1,yesterday,1,1,1,230,")  # not a time: line 13
    lines.append("M1,1767572000,1,1,1,230,cover_open;zap")  # unknown event code kept
    (tmp_path / "readings.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "alerts.jsonl"
    done = run_cli("replay", str(tmp_path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    reported = [line for line in done.stderr.splitlines() if "readings.csv:" in line]
    assert [int(line.split(":")[1]) for line in reported] == [4, 7, 11, 13]
    assert "expected 7 columns" in reported[0]
    assert "'abc' is not a number" in reported[1]
    assert "unknown meter 'NOPE'" in reported[2]
    assert "'yesterday'" in reported[3]
    assert "unknown event code 'zap'" in done.stderr
    assert "(25 used, 4 bad)" in done.stdout
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    reversal = next(a for a in alerts if a["kind"] == "reversal")
    assert reversal["meter"] == "M2"
    assert reversal["phase"] == 2
    assert reversal["start"] == "2026-01-05T00:00:00Z"
    assert reversal["end"] is None
    assert {"id", "severity", "confidence", "estimated_kwh_lost", "summary", "evidence"} <= set(
        reversal
    )


def test_replay_then_evaluate_a_simulated_fleet(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = run_cli("simulate", "--mix", "3", "--meters", "40", "--days", "2", "--out", str(data))
    assert made.returncode == 0, made.stderr
    out = tmp_path / "alerts.jsonl"
    done = _cli_process("replay", str(data), "--out", str(out))
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert alerts
    for alert in alerts:
        assert alert["start"].endswith("Z")
        assert alert["end"] is None or alert["end"] >= alert["start"]
        assert alert["raised"] is None or alert["raised"] >= alert["start"]
    scored = _cli_process("evaluate", str(data), str(out), "--json")
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["incidents"] > 10
    assert result["detection_recall"] >= 0.8
    assert result["precision"] >= 0.8
    assert result["summary"].startswith("detection recall")


def test_a_row_from_a_broken_clock_is_a_bad_row_not_the_data_time(tmp_path: Path) -> None:
    (tmp_path / "meters.csv").write_text(METERS)
    lines = ["ts,meter,v1,v2,v3,i1,i2,i3,p1,p2,p3"]
    three = "230,230,230,5,5,5,1100,1100,1100"
    one = "230,,,5,,,1100,,"
    for minute in range(180):
        ts = 1767571200 + 60 * minute
        for meter in ("M1", "M2", "FDR", "M5", "FDR2"):
            lines.append(f"{ts},{meter},{three}")
        for meter in ("M3", "M4"):
            lines.append(f"{ts},{meter},{one}")
        if minute == 60:
            lines.append(f"2030-01-01T00:00:00Z,M2,{three}")  # line 429
            lines.append(f"{ts - 120},M1,{three}")  # a late row: line 430
    (tmp_path / "readings.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "alerts.jsonl"
    done = run_cli("replay", str(tmp_path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    reported = [line for line in done.stderr.splitlines() if "readings.csv:" in line]
    assert [int(line.split(":")[1]) for line in reported] == [429, 430]
    assert "ahead of the stream's data time" in reported[0]
    assert "older than the meter's previous reading" in reported[1]
    assert "1 far ahead of the data time, 1 older than their meter's last row" in done.stdout
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert "comms_loss" not in kinds


def test_replay_writes_when_each_alert_was_raised() -> None:
    from meterguard.model import Alert, AlertKind, Severity
    from service.replay import alert_record

    alert = Alert(
        id="M2-reversal-1767571200",
        meter="M2",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_571_200,
        raised=1_767_571_500.5,
        phase=2,
        confidence=0.9,
        summary="phase 2 reversed",
    )
    record = alert_record(alert)
    assert (record["start"], record["raised"], record["end"]) == (
        "2026-01-05T00:00:00Z",
        "2026-01-05T00:05:00.500Z",
        None,
    )
    assert list(record)[:6] == ["id", "meter", "kind", "severity", "start", "raised"]
    assert alert_record(alert.model_copy(update={"raised": None}))["raised"] is None
    assert json.loads(json.dumps(record))["raised"] == "2026-01-05T00:05:00.500Z"
