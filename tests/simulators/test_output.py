"""The files a run writes parse per docs/FORMATS.md and carry the injected truth."""

from __future__ import annotations

import csv
import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from meterguard.meters_csv import read_meters_csv
from meterguard.model import EVENT_NAMES, AlertKind
from service.cli import main
from simulators.output import READING_COLUMNS, write_run
from simulators.physics import FleetModel
from simulators.scenario import ScenarioError, load_scenario, mix_scenario

EXAMPLE = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "example.toml"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    scenario = mix_scenario(seed=5, meters=60, days=2.0, step_s=300.0)
    summary = write_run(scenario, out, show_progress=False)
    assert summary.readings > 0
    return out


def test_meters_csv_lists_customers_and_feeders(run_dir: Path) -> None:
    meters = read_meters_csv(run_dir / "meters.csv")
    feeders = [m for m in meters if m.role == "feeder"]
    customers = [m for m in meters if m.role == "customer"]
    assert len(customers) == 60
    assert len(feeders) >= 2
    assert {m.transformer for m in customers} == {m.transformer for m in feeders}
    assert {m.service for m in customers} == {"1p2w", "3p4w"}
    assert any(m.generation for m in customers)
    assert all(m.ct_primary_a for m in customers if m.customer_class == "industrial")


def test_readings_are_time_ordered_and_blank_where_not_measured(run_dir: Path) -> None:
    meters = {m.id: m for m in read_meters_csv(run_dir / "meters.csv")}
    with (run_dir / "readings.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        assert tuple(header) == READING_COLUMNS
        last = 0.0
        seen: set[str] = set()
        events: set[str] = set()
        for row in reader:
            rec = dict(zip(header, row, strict=True))
            ts = _ts(rec["ts"])
            assert ts >= last
            last = ts
            meter = meters[rec["meter"]]
            seen.add(meter.id)
            if meter.service == "1p2w":
                assert rec["v2"] == rec["v3"] == rec["i2"] == rec["p3"] == ""
            for q in ("v1", "i1", "p1", "q1", "e_imp", "e_exp"):
                float(rec[q])
            if meter.role == "feeder":
                assert rec["in"] == ""
            if rec["events"]:
                events.update(rec["events"].split(";"))
    assert seen == set(meters)
    assert events <= set(EVENT_NAMES)
    assert {"power_down", "power_up", "magnetic_field"} <= events


def test_labels_name_real_meters_and_kinds_within_the_run(run_dir: Path) -> None:
    meters = {m.id: m for m in read_meters_csv(run_dir / "meters.csv")}
    labels = _rows(run_dir / "labels.csv")
    kinds = {label["kind"] for label in labels}
    assert kinds <= {k.value for k in AlertKind}
    assert {"bypass", "reversal", "voltage_loss", "phase_shift", "consumption_drop", "tamper",
            "comms_loss", "ct_ratio", "energy_balance"} <= kinds  # fmt: skip
    first = _ts("2026-01-05T00:00:00Z")
    for label in labels:
        meter = meters[label["meter"]]
        assert (meter.role == "feeder") == (label["kind"] == "energy_balance")
        assert first <= _ts(label["start"]) <= _ts(label["end"]) < first + 2 * 86400
        if label["phase"]:
            assert int(label["phase"]) in (1, 2, 3)
            if meter.service == "1p2w":
                assert label["phase"] == "1"
        float(label["magnitude"])


def test_labelled_bypass_shows_in_the_written_readings(run_dir: Path) -> None:
    labels = [r for r in _rows(run_dir / "labels.csv") if r["kind"] == "bypass"]
    meters = {m.id: m for m in read_meters_csv(run_dir / "meters.csv")}
    label = next(x for x in labels if float(x["magnitude"]) == 0.0 and x["phase"])
    col = f"i{label['phase']}"
    start, end = _ts(label["start"]), _ts(label["end"])
    inside: list[float] = []
    outside: list[float] = []
    for row in _rows(run_dir / "readings.csv"):
        if row["meter"] != label["meter"] or not row[col]:
            continue
        (inside if start <= _ts(row["ts"]) <= end else outside).append(float(row[col]))
    assert meters[label["meter"]].role == "customer"
    assert inside
    assert outside
    assert max(inside) < 0.05 * max(outside)


def test_simulate_command_writes_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    code = main(["simulate", "--mix", "3", "--meters", "30", "--days", "0.5", "--step-s", "600",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    assert "labelled incidents" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"meters.csv", "readings.csv", "labels.csv"}
    again = tmp_path / "again"
    main(["simulate", "--mix", "3", "--meters", "30", "--days", "0.5", "--step-s", "600",
          "--out", str(again)])  # fmt: skip
    for name in ("meters.csv", "readings.csv", "labels.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes()


def test_example_scenario_loads_and_runs(tmp_path: Path) -> None:
    scenario = load_scenario(EXAMPLE, days=3.0, step_s=900.0)
    assert len(scenario.incidents) == 12
    assert len(scenario.confounders) == 7
    summary = write_run(scenario, tmp_path, show_progress=False)
    labels = _rows(tmp_path / "labels.csv")
    assert summary.incidents == len(labels) == 12
    # Pools hand out distinct meters.
    customers = [x["meter"] for x in labels if x["kind"] != "energy_balance"]
    assert len(customers) == len(set(customers))
    with pytest.raises(ScenarioError, match="unknown transformer 'T003'"):
        FleetModel(load_scenario(EXAMPLE, meters=30))


def test_bad_scenario_file_is_reported_with_its_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[incident]]\nkind = "teleport"\nmeter = "M0001"\n')
    assert main(["simulate", "--scenario", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "incident[0].kind" in capsys.readouterr().err


def test_slow_meters_report_on_their_own_interval_and_keep_their_events(tmp_path: Path) -> None:
    spec = tmp_path / "slow.toml"
    spec.write_text(
        "[fleet]\nmeters = 40\nseed = 4\ndays = 1.5\nstep_s = 300\nmix = 4\n"
        "slow_share = 0.5\nslow_interval_s = 900\n"
    )
    write_run(load_scenario(spec), tmp_path, show_progress=False)
    counts: dict[str, int] = {}
    events: dict[str, set[str]] = {}
    for row in _rows(tmp_path / "readings.csv"):
        counts[row["meter"]] = counts.get(row["meter"], 0) + 1
        if row["events"]:
            events.setdefault(row["meter"], set()).update(row["events"].split(";"))
    steps = int(1.5 * 86400 / 300)
    feeders = {m: c for m, c in counts.items() if m.endswith("FDR")}
    assert max(feeders.values()) == steps  # (one transformer has an outage)
    customers = sorted(c for m, c in counts.items() if not m.endswith("FDR"))
    slow = [c for c in customers if c <= steps // 3 + 1]
    assert 10 <= len(slow) <= 30  # about half of 40
    for label in _rows(tmp_path / "labels.csv"):
        if label["kind"] == "tamper":
            assert events.get(label["meter"]), label


def test_meter_clocks_can_be_off_and_the_file_stays_in_time_order(tmp_path: Path) -> None:
    assert main(["simulate", "--mix", "6", "--meters", "30", "--days", "0.5", "--out",
                 str(tmp_path), "--clock-skew-s", "8"]) == 0  # fmt: skip
    last = 0.0
    offsets: dict[str, set[float]] = {}
    for row in _rows(tmp_path / "readings.csv"):
        ts = _ts(row["ts"])
        assert ts >= last
        last = ts
        offsets.setdefault(row["meter"], set()).add(round(ts - round(ts / 60.0) * 60.0, 3))
    # Each meter keeps its own constant offset, within the skew, and they differ.
    assert all(len(o) == 1 for o in offsets.values())
    values = [next(iter(o)) for o in offsets.values()]
    assert all(abs(v) <= 8.0 for v in values)
    assert len(set(values)) > len(values) // 2
    for label in _rows(tmp_path / "labels.csv"):
        start = _ts(label["start"])
        assert round(start - round(start / 60.0) * 60.0, 3) == next(iter(offsets[label["meter"]]))
    fast = mix_scenario(6, 30, 0.1, step_s=10.0)
    fast.options = dataclasses.replace(fast.options, clock_skew_s=8.0)
    with pytest.raises(ScenarioError, match="half the step"):
        write_run(fast, tmp_path / "x", show_progress=False)
