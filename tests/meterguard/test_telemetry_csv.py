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
