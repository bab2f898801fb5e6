"""readings.csv in chunks: strict about meaning, forgiving about layout, bad rows by line."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meterguard.errors import MeterguardError
from meterguard.model import QUANTITY_INDEX, Meter, MeterEvent, MeterRegistry, ReadingBatch
from service import telemetry_csv
from service.telemetry_csv import ReadingsCsvError, ReadingsReader, parse_time_text


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


@pytest.mark.parametrize("first_ts", ["", "1767571140", "2026-01-05T00:00:00Z"])
def test_blank_cells_are_not_measured_beside_a_bad_value(
    tmp_path: Path, fleet: MeterRegistry, first_ts: str
) -> None:
    rows = [
        f"{first_ts},A,,5",  # a blank time is a bad row; a blank value is not measured
        "1767571200,A,,5",
        "1767571260,B,inf,",
        "1767571320,A,231,",
        "1767571380,B,,6",
    ]
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    reasons = [(b.line, b.reason) for b in reader.stats.bad_rows]
    expected = [(4, "v1 'inf' is not finite")]
    if first_ts == "":
        expected.insert(0, (2, "ts is blank"))
    elif first_ts.startswith("2026"):  # RFC 3339, then epoch times: each read alone
        assert batch.ts[0] == 1767571200.0
    assert reasons == expected
    assert batch.ts[-3:].tolist() == [1767571200.0, 1767571320.0, 1767571380.0]
    v1 = batch.values[QUANTITY_INDEX["v1"], -3:]
    i1 = batch.values[QUANTITY_INDEX["i1"], -3:]
    np.testing.assert_array_equal(v1, [np.nan, 231.0, np.nan])
    np.testing.assert_array_equal(i1, [5.0, np.nan, 6.0])


def test_unknown_event_codes_stay_with_their_row_when_rows_before_are_dropped(
    tmp_path: Path, fleet: MeterRegistry
) -> None:
    rows = [
        "1767571200,A,230,",
        "1767571260,C,230,",  # unknown meter: dropped
        "1767571320,A,oops,",  # not a number: dropped
        "1767571380,B,230,odd_one;magnetic_field",
        "1767571440,A,230,odd_two",
    ]
    path = _write(tmp_path / "r.csv", rows, header="ts,meter,v1,events")
    batch, reader = _read(path, fleet, 1 << 20)
    assert reader.stats.bad == 2
    assert batch.ts.tolist() == [1767571200.0, 1767571380.0, 1767571440.0]
    assert batch.unknown_events == {1: ["odd_one"], 2: ["odd_two"]}
    assert batch.events[1] == MeterEvent.MAGNETIC_FIELD


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


def _rows(n: int = 10, t0: int = 1767571200) -> list[str]:
    return [f"{t0 + 60 * k},{'AB'[k % 2]},{230 + k},5" for k in range(n)]


@pytest.mark.parametrize("chunk", [30, 1 << 20])
def test_a_stray_quote_spoils_only_its_own_line(
    tmp_path: Path, fleet: MeterRegistry, chunk: int
) -> None:
    rows = _rows()
    rows[2] = rows[2].replace(",A,", ',"A,')  # line 4: a quote left open
    rows[5] = rows[5].replace(",231", "")  # nothing: keeps the numbering honest
    rows[6] = rows[6].replace(",A,", ',A",')  # line 8: a quote inside an unquoted value
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, chunk)
    assert [(b.line, b.reason.split(" (")[0].split(" at ")[0]) for b in reader.stats.bad_rows] == [
        (4, "unterminated quote"),
        (8, "quote inside an unquoted value"),
    ]
    assert reader.stats.rows == 10
    assert len(batch) == reader.stats.good == 8
    assert batch.ts[-1] == 1767571200 + 540  # the rows after the quote are all there


def test_quoted_values_follow_rfc_4180(tmp_path: Path, fleet: MeterRegistry) -> None:
    rows = [
        '"1767571200","A","230","5"',
        '1767571260,"B","",5',  # a quoted blank is not measured
        '1767571320,A,"2""30",5',  # a doubled quote inside: not a number, a bad row
        '1767571380,A,"231"x,5',  # text after the closing quote
        '1767571440,"B",232,"5"',
    ]
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    assert [(b.line, b.reason.split(" at ")[0]) for b in reader.stats.bad_rows] == [
        (4, "v1 '2\"30' is not a number"),
        (5, "text after a closing quote"),
    ]
    assert batch.ts.tolist() == [1767571200.0, 1767571260.0, 1767571440.0]
    assert math.isnan(batch.values[QUANTITY_INDEX["v1"], 1])


def test_a_short_or_long_row_names_its_line_and_counts(
    tmp_path: Path, fleet: MeterRegistry
) -> None:
    rows = _rows(4)
    rows[1] = "1767571260,B"
    rows[2] += ",7"
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    assert [(b.line, b.reason) for b in reader.stats.bad_rows] == [
        (3, "expected 4 columns, found 2"),
        (4, "expected 4 columns, found 5"),
    ]
    assert len(batch) == 2


def test_a_chunk_parsed_in_several_blocks_keeps_rows_and_bad_lines(
    tmp_path: Path, fleet: MeterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry_csv, "PARSE_BLOCK_BYTES", 256)  # about 10 rows a block
    rows = _rows(300)
    rows[150] = rows[150] + ",7"  # line 152: a column too many
    rows[260] = f"{1767571200 + 60 * 260},A,x30,5"  # line 262: not a number
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 1 << 20)
    assert [(b.line, b.reason) for b in reader.stats.bad_rows] == [
        (152, "expected 4 columns, found 5"),
        (262, "v1 'x30' is not a number"),
    ]
    expected = [1767571200.0 + 60 * k for k in range(300) if k not in (150, 260)]
    assert batch.ts.tolist() == expected
    assert list(batch.slot[:4]) == [0, 1, 0, 1]
    assert batch.values[QUANTITY_INDEX["v1"], -1] == 230 + 299


def test_lines_that_are_not_text_are_bad_rows(tmp_path: Path, fleet: MeterRegistry) -> None:
    rows = [r.encode() for r in _rows(6)]
    rows[1] = rows[1][:3] + b"\x00" + rows[1][3:]  # line 3
    rows[2] = rows[2][:3] + b"\xff" + rows[2][3:]  # line 4
    rows[3] = rows[3][:3] + b"\r" + rows[3][3:]  # line 5: a carriage return mid-line
    path = tmp_path / "r.csv"
    path.write_bytes(b"ts,meter,v1,i1\r\n" + b"\r\n".join(rows) + b"\r\n")
    batch, reader = _read(path, fleet, 1 << 20)
    assert [(b.line, b.reason.split(" (")[0]) for b in reader.stats.bad_rows] == [
        (3, "not text"),
        (4, "not text"),
        (5, "carriage return inside the line"),
    ]
    assert "NUL byte at column 4" in reader.stats.bad_rows[0].reason
    assert "invalid UTF-8 at column 4" in reader.stats.bad_rows[1].reason
    assert len(batch) == 3


def test_a_line_too_long_to_be_a_row_is_one_bad_row(tmp_path: Path, fleet: MeterRegistry) -> None:
    rows = _rows(4)
    rows.insert(2, "x" * 1_100_000)  # line 4
    batch, reader = _read(_write(tmp_path / "r.csv", rows), fleet, 4096)
    assert [b.line for b in reader.stats.bad_rows] == [4]
    assert "longer than" in reader.stats.bad_rows[0].reason
    assert len(batch) == 4


@pytest.mark.parametrize(
    ("encode", "encoding"),
    [
        (lambda t: t.encode(), "UTF-8"),
        (lambda t: b"\xef\xbb\xbf" + t.encode(), "UTF-8"),
        (lambda t: t.encode("utf-16"), "UTF-16"),
        (lambda t: b"\xfe\xff" + t.encode("utf-16-be"), "UTF-16"),
        (lambda t: t.encode("utf-32"), "UTF-32"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_encodings_and_gzip_are_read(
    tmp_path: Path, fleet: MeterRegistry, encode: Any, encoding: str, compress: bool
) -> None:
    text = "ts,meter,v1,i1\n" + "\n".join(_rows()) + "\n"
    data = encode(text)
    path = tmp_path / ("r.csv.gz" if compress else "r.csv")
    path.write_bytes(gzip.compress(data) if compress else data)
    batch, reader = _read(path, fleet, 64)
    assert reader.stats.bad == 0
    assert len(batch) == 10
    assert reader.stats.encoding == encoding
    assert reader.stats.compression == ("gzip" if compress else None)
    assert reader.bytes_done == path.stat().st_size


def test_invalid_utf16_is_a_bad_row(tmp_path: Path, fleet: MeterRegistry) -> None:
    rows = _rows(3)
    text = "ts,meter,v1,i1\n" + "\n".join(rows) + "\n"
    data = bytearray(text.encode("utf-16-le"))
    at = 2 * (len("ts,meter,v1,i1\n") + len(rows[0]) + 3)  # inside line 3
    data[at : at + 2] = b"\x00\xd8"  # a lone surrogate
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xff\xfe" + bytes(data))
    batch, reader = _read(path, fleet, 1 << 20)
    assert [(b.line, b.reason) for b in reader.stats.bad_rows] == [(3, "not text (invalid UTF-16)")]
    assert len(batch) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "r.csv:1: no header row (empty file)"),
        (b"\n\n", "r.csv:2: no header row"),
        (bytes(range(256)) * 4, "r.csv:1: not text (NUL byte at column 1)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "r.csv:1: not text (invalid UTF-8 at column 1)"),
        (
            "ts,meter\n1,A\n".encode("utf-16-le"),
            "r.csv:1: not text (NUL byte at column 2; UTF-16 without a byte-order mark?",
        ),
        (b"PK\x03\x04rest", "r.csv:1: not text (a zip archive)"),
        (
            gzip.compress(b"\xfd7zXZ\x00....", mtime=0),
            "r.csv:1: not text (xz-compressed inside the gzip",
        ),
        (gzip.compress(b"ts,meter,v1\n" * 1000, mtime=0)[:-30], "r.csv:1: broken gzip stream"),
        (b"\x1f\x8bnot gzip at all", "r.csv: broken gzip stream"),
        (b'ts,"meter,v1\n1,A,2\n', "r.csv:1: header: unterminated quote at column 4"),
        (b"ts,meter,v1,v1\n", "r.csv:1: column(s) named twice: v1"),
        (b"ts,meter\r1,A\r", "r.csv:1: carriage return inside the header line"),
        (b"\xef\xbb\xbfts,m\xe9ter\n", "r.csv:1: not text (invalid UTF-8 at column 5)"),
        (b"x" * 1_100_000, "r.csv:1: not text (no line break in"),
    ],
)
def test_input_that_cannot_be_read_is_an_error_with_file_and_line(
    tmp_path: Path, fleet: MeterRegistry, data: bytes, message: str
) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(data)
    with pytest.raises(ReadingsCsvError) as info:
        list(ReadingsReader(path, fleet))
    assert str(info.value).startswith(f"{tmp_path}/{message}")


def test_a_missing_file_or_a_directory_is_an_error(tmp_path: Path, fleet: MeterRegistry) -> None:
    with pytest.raises(ReadingsCsvError, match=r"missing\.csv: no such file$"):
        ReadingsReader(tmp_path / "missing.csv", fleet)
    with pytest.raises(ReadingsCsvError, match="is a directory"):
        ReadingsReader(tmp_path, fleet)
