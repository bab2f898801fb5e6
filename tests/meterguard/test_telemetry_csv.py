"""readings.csv in chunks: strict about meaning, forgiving about layout, bad rows by line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from meterguard.errors import MeterguardError
from meterguard.model import QUANTITY_INDEX, Meter, MeterEvent, MeterRegistry, ReadingBatch
from meterguard.telemetry_csv import ReadingsReader, parse_time_text


@pytest.fixture
def fleet() -> MeterRegistry:
    return MeterRegistry([Meter(id=m, service="3p4w", nominal_v=230) for m in ("A", "B")])


def _read(path: Path, fleet: MeterRegistry, chunk: int) -> tuple[ReadingBatch, ReadingsReader]:
    reader = ReadingsReader(path, fleet, chunk_bytes=chunk)
    return ReadingBatch.concat(list(reader)), reader


@pytest.mark.parametrize("chunk", [48, 100, 1 << 20])
def test_chunks_keep_line_numbers_and_values(
    tmp_path: Path, fleet: MeterRegistry, chunk: int
) -> None:
    lines = ["\ufeffv1 , meter,ts,extra,events"]  # BOM, spaces, an unknown column
    for k in range(20):
        lines.append(f"{230 + k},{'AB'[k % 2]},{1767571200 + 30 * k}.5,x,")
    lines[7] = "231,A,1767571380.5,x,magnetic_field;power_down"
    lines[12] = "oops,B,1767571530.5,x,"  # line 13
    lines[15] = ""  # an empty line: skipped, not counted
    lines[18] = "232,C,1767571740.5,x,"  # line 19: unknown meter
    path = tmp_path / "readings.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    batch, reader = _read(path, fleet, chunk)
    assert [(b.line, b.reason.split(" ")[0]) for b in reader.stats.bad_rows] == [
        (13, "v1"),
        (19, "unknown"),
    ]
    assert reader.stats.bad == 2
    assert reader.stats.good == len(batch) == 17
    assert reader.stats.ignored_columns == ["extra"]
    assert batch.ts[0] == 1767571200.5
    assert batch.values[QUANTITY_INDEX["v1"], 0] == 230.0
    assert math.isnan(batch.values[QUANTITY_INDEX["p1"], 0])  # absent column: not measured
    row = int(np.flatnonzero(batch.ts == 1767571380.5)[0])
    assert batch.events[row] == MeterEvent.MAGNETIC_FIELD | MeterEvent.POWER_DOWN
    assert list(batch.slot[:2]) == [0, 1]


def test_times_in_either_form(tmp_path: Path, fleet: MeterRegistry) -> None:
    path = tmp_path / "readings.csv"
    path.write_text(
        "ts,meter,i1\n2026-01-05T00:00:00Z,A,1\n2026-01-05T00:01:00.250Z,A,\n1767571320,B,2\n"
    )
    batch, reader = _read(path, fleet, 1 << 20)
    assert list(batch.ts) == [1767571200.0, 1767571260.25, 1767571320.0]
    assert math.isnan(batch.values[QUANTITY_INDEX["i1"], 1])
    assert reader.stats.bad == 0
    assert parse_time_text("2026-01-05T01:00:00+01:00") == 1767571200.0


def test_missing_required_column_is_an_error(tmp_path: Path, fleet: MeterRegistry) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("time,meter,v1\n1,A,230\n")
    with pytest.raises(MeterguardError, match="missing required column"):
        list(ReadingsReader(path, fleet))


def test_a_chunk_of_empty_lines_is_skipped(tmp_path: Path, fleet: MeterRegistry) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("ts,meter,v1\n1,A,230\n" + "\n" * 40 + "2,B,231\n3,B,x\n")
    batch, reader = _read(path, fleet, 16)
    assert list(batch.ts) == [1.0, 2.0]
    assert [b.line for b in reader.stats.bad_rows] == [44]


def _write(path: Path, rows: list[str], header: str = "ts,meter,v1,i1") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400"])
@pytest.mark.parametrize("slow", [False, True])
def test_non_finite_numbers_are_bad_rows_on_both_paths(
    tmp_path: Path, fleet: MeterRegistry, text: str, slow: bool
) -> None:
    rows = ["1767571200,A,230,5", f"1767571260,A,{text},5", "1767571320,A,231,5"]
    if slow:  # a word in the column sends it down the per-value path
        rows.append("1767571380,A,oops,5")
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    reasons = {b.line: b.reason for b in reader.stats.bad_rows}
    assert reasons[3] == f"v1 {text!r} is not finite"
    assert batch.ts.tolist() == [1767571200.0, 1767571320.0]
    assert np.isfinite(batch.values[QUANTITY_INDEX["v1"]]).all()


@pytest.mark.parametrize("text", ["inf", "nan", "-inf"])
def test_non_finite_timestamps_are_bad_rows(
    tmp_path: Path, fleet: MeterRegistry, text: str
) -> None:
    rows = ["1767571200,A,230,5", f"{text},B,230,5", "1767571260,B,230,5"]
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    assert [(b.line, b.reason) for b in reader.stats.bad_rows] == [
        (3, f"ts {float(text)!r} is not finite")
    ]
    assert np.isfinite(batch.ts).all()
    assert len(batch) == 2


def test_a_row_far_ahead_of_the_data_is_bad_and_does_not_move_time(
    tmp_path: Path, fleet: MeterRegistry
) -> None:
    t0 = 1767571200
    rows = [f"{t0 + 60 * k},{'AB'[k % 2]},230,5" for k in range(10)]
    rows.insert(4, "2030-01-01T00:00:00Z,B,230,5")  # line 6: a broken clock
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 120)
    assert [b.line for b in reader.stats.bad_rows] == [6]
    assert "ahead" in reader.stats.bad_rows[0].reason
    assert reader.stats.ahead == 1
    assert batch.ts.max() == t0 + 540
    assert len(batch) == 10


def test_a_jump_that_the_next_rows_confirm_is_kept(tmp_path: Path, fleet: MeterRegistry) -> None:
    t0 = 1767571200
    later = t0 + 10 * 86_400  # a recording with a 10-day gap in it
    rows = [f"{t0},A,230,5", f"{t0},B,230,5", f"{later},A,230,5", f"{later},B,230,5"]
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    assert reader.stats.bad == 0
    assert batch.ts.tolist() == [t0, t0, later, later]


def test_the_first_row_far_ahead_is_bad_too(tmp_path: Path, fleet: MeterRegistry) -> None:
    t0 = 1767571200
    rows = [f"{t0 + 5 * 365 * 86_400},A,230,5", f"{t0},B,230,5", f"{t0 + 60},A,230,5"]
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    assert [b.line for b in reader.stats.bad_rows] == [2]
    assert batch.ts.max() == t0 + 60


@pytest.mark.parametrize("chunk", [40, 1 << 20])
def test_late_rows_of_a_meter_are_counted_and_dropped(
    tmp_path: Path, fleet: MeterRegistry, chunk: int
) -> None:
    t0 = 1767571200
    rows = [f"{t0},A,230,5", f"{t0 + 60},A,230,5", f"{t0 + 30},B,230,5", f"{t0 + 30},A,230,5"]
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, chunk)
    assert [b.line for b in reader.stats.bad_rows] == [5]
    assert reader.stats.late == 1
    assert "older" in reader.stats.bad_rows[0].reason
    a_times = batch.ts[batch.slot == fleet.slot("A")]
    assert (np.diff(a_times) >= 0).all()
