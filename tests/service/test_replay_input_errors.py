"""`meterguard replay` and `evaluate` on damaged, re-encoded and missing input files.

Input that can be read is read (bad rows counted and shown by line, exit 0); input that
cannot stops with `FILE[:LINE]: reason` and exit code 2, never a traceback, and leaves an
earlier alerts file alone.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from service.cli import main

SUITE_ARGS = ["--mix", "3", "--meters", "30", "--days", "1"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("suite")
    assert main(["simulate", *SUITE_ARGS, "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def baseline(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("baseline") / "alerts.jsonl"
    assert main(["replay", str(suite), "--out", str(out), "--quiet"]) == 0
    alerts = out.read_text().splitlines()
    assert len(alerts) > 5
    return alerts


def _copy(suite: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(suite, folder)
    return folder


def _replay(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    """Replay the folder: exit code, stdout and stderr together, the alerts written."""
    out = folder / "alerts.jsonl"
    code = main(["replay", str(folder), "--out", str(out)])
    said = capsys.readouterr()
    assert "Traceback" not in said.err
    return code, said.out + said.err, out.read_text().splitlines() if out.exists() else []


def test_a_stray_quote_costs_one_row_not_the_rest_of_the_file(
    suite: Path, baseline: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(suite, tmp_path)
    readings = folder / "readings.csv"
    lines = readings.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b",", b',"', 1)  # line 3
    readings.write_bytes(b"\n".join(lines))
    code, err, alerts = _replay(folder, capsys)
    assert code == 0
    assert f"{readings}:3: unterminated quote" in err
    assert "1 bad" in err
    assert len(alerts) >= len(baseline) - 1


@pytest.mark.parametrize("how", ["utf-16", "gzip", "gzip-beside"])
def test_utf16_and_gzip_replay_the_same_alerts(
    suite: Path,
    baseline: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    folder = _copy(suite, tmp_path)
    readings = folder / "readings.csv"
    text = readings.read_bytes()
    if how == "utf-16":
        readings.write_bytes(text.decode().encode("utf-16"))
    elif how == "gzip":
        readings.write_bytes(gzip.compress(text, compresslevel=1))
    else:  # readings.csv.gz alone in the folder
        readings.unlink()
        (folder / "readings.csv.gz").write_bytes(gzip.compress(text, compresslevel=1))
    code, err, alerts = _replay(folder, capsys)
    assert code == 0, err
    assert alerts == baseline


def test_many_bad_rows_show_the_first_twenty_and_count_them_all(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(suite, tmp_path)
    readings = folder / "readings.csv"
    lines = readings.read_text().split("\n")
    for k in range(100, 150):
        lines[k] = lines[k] + ",extra"
    readings.write_text("\n".join(lines))
    code, err, _ = _replay(folder, capsys)
    assert code == 0
    shown = [line for line in err.splitlines() if line.startswith(f"{readings}:")]
    assert "columns, found" in shown[0]
    assert [int(line.split(":")[1]) for line in shown] == list(range(101, 121))
    assert "50 bad rows in all (the first 20 shown)" in err


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(range(256)) * 64, "readings.csv:1: not text (NUL byte at column 1)"),
        (gzip.compress(bytes(range(256)) * 64), "readings.csv:1: not text (NUL byte"),
        (b"PK\x03\x04" + bytes(100), "readings.csv:1: not text (a zip archive)"),
        ("ts,meter\n".encode("utf-16-le"), "readings.csv:1: not text (NUL byte at column 2"),
        (b"", "readings.csv:1: no header row (empty file)"),
    ],
)
def test_input_that_is_not_a_csv_stops_with_exit_2(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, reason: str
) -> None:
    folder = _copy(suite, tmp_path)
    (folder / "readings.csv").write_bytes(data)
    (folder / "alerts.jsonl").write_text("earlier alerts\n")
    code, err, alerts = _replay(folder, capsys)
    assert code == 2
    assert f"meterguard: {folder}/{reason}" in err
    assert alerts == ["earlier alerts"]  # a failed replay leaves the earlier file alone
    assert not list(folder.glob(".*partial"))


def test_every_row_bad_is_exit_2(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(suite, tmp_path)
    (folder / "readings.csv").write_text("ts,meter,v1\n1,nobody,230\n2,nobody,231\n")
    code, err, _ = _replay(folder, capsys)
    assert code == 2
    assert "readings.csv:2: unknown meter 'nobody'" in err
    assert "none of its 2 rows could be used" in err


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: (f / "readings.csv").unlink(), "readings.csv: no such file"),
        (lambda f: (f / "readings.csv").unlink() or (f / "readings.csv").mkdir(), "is a directory"),
        (lambda f: (f / "meters.csv").unlink(), "meters.csv: no such file"),
        (
            lambda f: (f / "meters.csv").write_bytes(b"\x00\x01\x02\n"),
            "meters.csv:1: not text (NUL byte at column 1)",
        ),
        (
            lambda f: (f / "meters.csv").write_text('meter,service,nominal_v\nM1,"1p2w,230\n'),
            "meters.csv:2: unterminated quote at column 4",
        ),
        (
            lambda f: (f / "meters.csv").write_text("meter,service,nominal_v\nM1,1p2w\n"),
            "meters.csv:2: expected 3 columns, found 2",
        ),
    ],
)
def test_missing_or_broken_files_name_themselves(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, reason: str
) -> None:
    folder = _copy(suite, tmp_path)
    change(folder)  # type: ignore[operator]
    code, err, _ = _replay(folder, capsys)
    assert code == 2
    assert err.startswith("meterguard: ")
    assert reason in err


def test_a_missing_data_folder_or_a_file_in_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "alerts.jsonl")
    assert main(["replay", str(tmp_path / "nowhere"), "--out", out]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", str(tmp_path / "file"), out]) == 2
    assert "file: not a folder" in capsys.readouterr().err


def test_an_alerts_file_that_cannot_be_written(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no" / "such" / "alerts.jsonl"
    assert main(["replay", str(suite), "--out", str(out), "--quiet"]) == 2
    assert f"{out}: cannot be written" in capsys.readouterr().err


@pytest.fixture
def scored(suite: Path, baseline: list[str], tmp_path: Path) -> Path:
    folder = _copy(suite, tmp_path)
    (folder / "alerts.jsonl").write_text("\n".join(baseline) + "\n")
    return folder


def test_evaluate_reads_utf16_and_gzip_input(
    scored: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts = str(scored / "alerts.jsonl")
    assert main(["evaluate", str(scored), alerts, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    labels = scored / "labels.csv"
    labels.write_bytes(labels.read_text().encode("utf-16"))
    assert main(["evaluate", str(scored), alerts, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == plain
    labels.write_bytes(gzip.compress(labels.read_bytes()))
    assert main(["evaluate", str(scored), alerts, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == plain
    # readings.csv.gz in place of readings.csv gives the same meter-days.
    readings = scored / "readings.csv"
    (scored / "readings.csv.gz").write_bytes(gzip.compress(readings.read_bytes(), 1))
    readings.unlink()
    assert main(["evaluate", str(scored), alerts, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == plain


@pytest.mark.parametrize(
    ("labels", "alerts", "reason"),
    [
        (None, b"", "labels.csv: no such file"),
        (b'meter,kind,start\nM1,"bypass,2026-01-05T00:00:00Z\n', b"", "labels.csv:2: unterminated"),
        (b"meter,kind,start\nM1,bypass,yesterday\n", b"", "labels.csv:2: Invalid isoformat"),
        (b"meter,kind,start\nM1,bypass\n", b"", "labels.csv:2: expected 3 columns, found 2"),
        (b"\xff\xfe\x00\xd8", b"", "labels.csv:1: not text (invalid UTF-16)"),
        (b"", bytes(range(256)), "alerts.jsonl:1: not text (NUL byte at column 1)"),
        (b"", b"[1, 2]\n", "alerts.jsonl:1: not an alert: a JSON list, not an object"),
        (b"", b'{"kind": "bypass"}\n', "alerts.jsonl:1: not an alert: no 'meter'"),
        (
            b"",
            b'\n{"meter": "M1", "kind": "bypass", "start": NaN}\n',
            "alerts.jsonl:2: not an alert: not a finite time",
        ),
    ],
)
def test_evaluate_refuses_broken_labels_and_alerts(
    scored: Path,
    capsys: pytest.CaptureFixture[str],
    labels: bytes | None,
    alerts: bytes,
    reason: str,
) -> None:
    if labels is None:
        (scored / "labels.csv").unlink()
    elif labels:
        (scored / "labels.csv").write_bytes(labels)
    if alerts:
        (scored / "alerts.jsonl").write_bytes(alerts)
    code = main(["evaluate", str(scored), str(scored / "alerts.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("meterguard: ")
    assert reason in err, err


def test_a_replay_without_a_holiday_calendar_says_what_that_costs(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warned = _replay_warnings(suite, tmp_path, capsys)
    assert "warning: no holiday calendar" in warned
    assert "--country" in warned
    for place in WITH_1_MAY:
        assert "holiday calendar" not in _replay_warnings(suite, tmp_path, capsys, *place)


def test_a_replay_names_a_working_day_its_customers_rested_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A week with Germany's 1 May, a Friday: the simulated shops and plants keep it.
    fleet = tmp_path / "fleet"
    simulate = ["--mix", "1", "--meters", "60", "--days", "8", "--step", "1h"]
    simulate += ["--start", "2026-04-27", "--country", "DE", "--out", str(fleet)]
    assert main(["simulate", *simulate]) == 0
    capsys.readouterr()
    warned = _replay_warnings(fleet, tmp_path, capsys)
    named = "rested as on a Sunday on working days of the calendar: 2026-05-01 (Friday)."
    assert f"{named} Each was judged as a day of rest once it was over" in warned
    assert "--holiday 2026-05-01" in warned
    # Told not to act on it, replay only names it.
    config = tmp_path / "meterguard.toml"
    config.write_text("[calendar]\nrest_days_from_data = false\n")
    warned = _replay_warnings(fleet, tmp_path, capsys, "--config", str(config))
    assert f"{named} Such days were judged and learned as working days" in warned
    assert "its hours are learned as a working day's" in warned
    for place in WITH_1_MAY:
        assert "rested" not in _replay_warnings(fleet, tmp_path, capsys, *place)


#: Two calendars that know 1 May 2026.
WITH_1_MAY = (["--country", "DE"], ["--holiday", "2026-05-01"])


def _replay_warnings(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *options: str
) -> str:
    """Replay `folder` with `options`; return what it printed to stderr."""
    out = tmp_path / "alerts.jsonl"
    assert main(["replay", str(folder), "--out", str(out), "--quiet", *options]) == 0
    return capsys.readouterr().err
