"""Read readings.csv (docs/FORMATS.md) in chunks into ReadingBatches, counting bad rows.

Strict about meaning (a value that is not a finite number, an unknown meter, a time that
is not a finite epoch or RFC 3339 time makes the row bad), forgiving about layout (column
order free, optional columns missing, blank = not measured). Time order is checked too: a
row more than MAX_AHEAD_S ahead of the stream's data time (a meter with a broken clock) and
a row older than its meter's previous good row (a late row) are bad rows, so that neither
can move the engine's data time or a detector's window the wrong way. A bad row is counted
and reported with its line number; the rest of the file flows on.
"""

from __future__ import annotations

import codecs
import io
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from meterguard.errors import MeterguardError
from meterguard.model import (
    QUANTITIES,
    QUANTITY_INDEX,
    EventArray,
    MeterRegistry,
    ReadingBatch,
    encode_events,
)
from meterguard.textinput import (
    MAX_LINE_BYTES,
    InputStream,
    checked_size,
    open_input,
    split_csv_line,
    text_problem,
)

REQUIRED_COLUMNS = ("ts", "meter")
#: Bad rows kept with their reasons (all are counted).
MAX_REPORTED_BAD_ROWS = 1000
DEFAULT_CHUNK_BYTES = 16 << 20
#: Arrow parses a chunk in blocks of this size: three times faster than one block of the
#: whole chunk (the block's columns stay in the CPU's cache). Serial parsing keeps the row
#: numbers of invalid rows, which Arrow's threaded parsing loses.
PARSE_BLOCK_BYTES = max(1 << 20, 2 * MAX_LINE_BYTES)
#: A row this far ahead of the stream's data time (the latest good row before it) is bad,
#: unless the next row, from another meter, confirms the jump (a recording with a gap).
MAX_AHEAD_S = 86_400.0


class ReadingsCsvError(MeterguardError, ValueError):
    """readings.csv cannot be read at all: missing, not text, no header, a column missing.

    Carries the line where reading stopped when there is one (`FILE:LINE: reason`).
    """

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class BadRow:
    """One row that could not be used, with its line in the file and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ReadStats:
    """What a read of readings.csv saw."""

    rows: int = 0
    good: int = 0
    bad: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    #: Of the bad rows: those far ahead of the stream's data time, and those older than
    #: their meter's previous good row.
    ahead: int = 0
    late: int = 0
    unknown_events: Counter[str] = field(default_factory=Counter)
    ignored_columns: list[str] = field(default_factory=list)
    #: How the file was stored: its text encoding, and "gzip" when it was compressed.
    encoding: str = "UTF-8"
    compression: str | None = None

    def add_bad(self, line: int, reason: str) -> None:
        """Count a bad row and keep it for the report while there is room."""
        self.bad += 1
        if len(self.bad_rows) < MAX_REPORTED_BAD_ROWS:
            self.bad_rows.append(BadRow(line, reason))


def _flat(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous Arrow array of a column."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values


# pyarrow imports pandas on the first conversion to or from Python or numpy objects (a
# quarter of a second of every replay's start), so the reader reads Arrow's buffers itself.


def _floats(values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.float64]:
    """Cast a column to float64: a writable numpy array, NaN where a cell is null."""
    array = _flat(pc.cast(values, pa.float64()))
    out = _buffer(array, np.float64)
    if array.null_count:
        out[_nulls(array)] = np.nan
    return out


def _ints(values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.int64]:
    """Cast a column to int64: a writable numpy array, 0 where a cell is null."""
    array = _flat(pc.cast(values, pa.int64()))
    out = _buffer(array, np.int64)
    if array.null_count:
        out[_nulls(array)] = 0
    return out


def _buffer(array: pa.Array, dtype: type[np.float64] | type[np.int64]) -> npt.NDArray[Any]:
    """Copy a fixed-width array's values buffer (undefined where a cell is null)."""
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    size = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * size
    ).copy()


def _nulls(values: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
    """Which cells of a column are null (blank)."""
    flags = _flat(pc.is_null(values))
    n = len(flags)
    if n == 0:
        return np.zeros(0, dtype=np.bool_)
    bits = np.frombuffer(flags.buffers()[1], dtype=np.uint8)
    unpacked = np.unpackbits(bits, count=flags.offset + n, bitorder="little")
    mask: npt.NDArray[np.bool_] = unpacked[flags.offset :].astype(np.bool_)
    return mask


def parse_time_text(text: str) -> float:
    """Parse one timestamp: epoch seconds or RFC 3339 (naive times are taken as UTC)."""
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"time {raw!r} is not finite")
    return value


def _times(
    column: pa.ChunkedArray | pa.Array,
) -> tuple[npt.NDArray[np.float64], list[tuple[int, str]]]:
    """Turn the ts column into epoch seconds; returns the bad (row, reason) pairs apart."""
    # A failed cast costs as much as a parse, so the form of the first written value
    # decides which of the two fast paths is tried first.
    first = pc.drop_null(column.slice(0, 64))
    epoch_first = len(first) == 0 or _is_number(first[0].as_py())
    paths = (_epoch_times, _rfc3339_times) if epoch_first else (_rfc3339_times, _epoch_times)
    for path in paths:
        try:
            return path(column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    n = len(column)
    values = np.full(n, np.nan)
    slow_bad: list[tuple[int, str]] = []
    for i, text in enumerate(column.to_pylist()):
        if text is None:
            slow_bad.append((i, "ts is blank"))
            continue
        try:
            values[i] = parse_time_text(text)
        except ValueError as exc:
            reason = (
                f"ts {text!r} is not finite"
                if "not finite" in str(exc)
                else f"ts {text!r} is neither RFC 3339 nor epoch seconds"
            )
            slow_bad.append((i, reason))
    return values, slow_bad


def _is_number(text: str) -> bool:
    """Whether a cell reads as a number (epoch seconds) rather than a calendar time."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _epoch_times(
    column: pa.ChunkedArray | pa.Array,
) -> tuple[npt.NDArray[np.float64], list[tuple[int, str]]]:
    """Epoch seconds as text to floats; raises ArrowInvalid if any cell is not a number."""
    values = _floats(column)
    odd = np.flatnonzero(~np.isfinite(values))
    if odd.size == 0:
        return values, []
    nulls = _nulls(column)
    bad = [
        (i, "ts is blank" if nulls[i] else f"ts {float(values[i])!r} is not finite")
        for i in odd.tolist()
    ]
    values[odd] = np.nan
    return values, bad


def _rfc3339_times(
    column: pa.ChunkedArray | pa.Array,
) -> tuple[npt.NDArray[np.float64], list[tuple[int, str]]]:
    """RFC 3339 text to epoch seconds; raises ArrowInvalid if any cell is not one."""
    stamps = pc.cast(column, pa.timestamp("us", tz="UTC"))
    values = _ints(stamps).astype(np.float64) / 1e6
    if not stamps.null_count:
        return values, []
    nulls = _nulls(stamps)
    values[nulls] = np.nan
    return values, [(i, "ts is blank") for i in np.flatnonzero(nulls).tolist()]


def _numbers(
    name: str, column: pa.ChunkedArray | pa.Array
) -> tuple[npt.NDArray[np.float64], list[tuple[int, str]]]:
    """Turn a numeric column into floats (blank: NaN); returns the bad (row, reason) pairs.

    A value that is not finite (`inf`, `nan`, `1e400`) makes the row bad, whichever path
    parsed it: only a blank cell means "not measured".
    """
    try:
        values = _floats(column)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        odd = ~np.isfinite(values)
        # Blank cells are NaN too but no fault (most meters leave phases blank): when the
        # cells that are not finite are as many as the blanks, they are the blanks.
        if int(odd.sum()) == column.null_count:
            return values, []
        written = ~_nulls(column)
        rows = np.flatnonzero(odd & written)
        if rows.size == 0:
            return values, []
        texts = column.take(pa.array(rows)).to_pylist()
        pairs = [
            (int(i), f"{name} {t!r} is not finite")
            for i, t in zip(rows.tolist(), texts, strict=True)
        ]
        return values, pairs
    out = np.full(len(column), np.nan)
    bad: list[tuple[int, str]] = []
    for i, text in enumerate(column.to_pylist()):
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            bad.append((i, f"{name} {text!r} is not a number"))
            continue
        if not math.isfinite(value):
            bad.append((i, f"{name} {text!r} is not finite"))
            continue
        out[i] = value
    return out, bad


@dataclass(slots=True)
class _LineLayout:
    """Where each line of a chunk starts and ends, and which lines are unusable as text.

    `stops` is the position of each line's line feed (or the chunk's end), `ends` the end of
    its content (before a CRLF's carriage return). `problems` maps a line's index to why it
    is bad.
    """

    starts: npt.NDArray[np.int64]
    stops: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    problems: dict[int, str]

    @property
    def empty(self) -> npt.NDArray[np.bool_]:
        """Lines without content: the CSV parser skips them, so they are no rows."""
        mask: npt.NDArray[np.bool_] = self.ends == self.starts
        return mask


def _layout(chunk: bytes, raw: npt.NDArray[np.uint8], encoding: str) -> _LineLayout:
    """Find the chunk's lines and the ones that are not well-formed text.

    Each check first asks whether the chunk holds the byte at all (a scan at memory speed),
    so a clean file pays for none of the per-line work.
    """
    stops = np.flatnonzero(raw == 10).astype(np.int64)
    if len(chunk) and chunk[-1:] != b"\n":
        stops = np.append(stops, len(chunk))
    starts = np.zeros_like(stops)
    starts[1:] = stops[:-1] + 1
    ends = stops.copy()
    carriage = b"\r" in chunk
    if carriage and stops.size:
        ends -= (stops > starts) & (raw[np.maximum(stops - 1, 0)] == 13)
    layout = _LineLayout(starts, stops, ends, {})
    problems = layout.problems

    def line_of(positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        found: npt.NDArray[np.int64] = np.searchsorted(stops, positions, side="left")
        return found

    if b"\x00" in chunk:
        for k in np.unique(line_of(np.flatnonzero(raw == 0))).tolist():
            problems.setdefault(k, text_problem(chunk[starts[k] : stops[k]]) or "not text")
    if not chunk.isascii():
        for k in _undecodable_lines(chunk, stops):
            problems.setdefault(k, text_problem(chunk[starts[k] : stops[k]], encoding) or "")
    if carriage:
        cr = np.flatnonzero(raw == 13)
        after = np.minimum(cr + 1, len(chunk) - 1)
        stray = cr[(cr + 1 < len(chunk)) & (raw[after] != 10)]
        for k in np.unique(line_of(stray)).tolist():
            problems.setdefault(k, "carriage return inside the line (lines end in LF or CRLF)")
    if b'"' in chunk:
        for k, reason in _quote_problems(raw, layout).items():
            problems.setdefault(k, reason)
    return layout


def _undecodable_lines(chunk: bytes, stops: npt.NDArray[np.int64]) -> list[int]:
    """Return the indices of the lines that are not UTF-8, decoding each stretch once."""
    view = memoryview(chunk)
    found: list[int] = []
    at = 0
    while at < len(chunk):
        try:
            codecs.utf_8_decode(view[at:], "strict", True)
        except UnicodeDecodeError as exc:
            k = int(np.searchsorted(stops, at + exc.start, side="left"))
            found.append(k)
            at = int(stops[k]) + 1
            continue
        break
    return found


def _quote_problems(raw: npt.NDArray[np.uint8], layout: _LineLayout) -> dict[int, str]:
    """Return the lines whose quotes break RFC 4180 (within a line), with the reason.

    Counting quotes along a line, a quote with an even number before it must open a value
    (at the start of a field) or be the second of a doubled `""`; one with an odd number
    before it must close a value (before a comma or the line's end) or be the first of a
    doubled `""`. A line with an odd number of quotes leaves one open: a value cannot span
    lines, so such a line is bad on its own and the next line is read afresh. All of it is
    array work over the quotes, so a file that quotes every value stays fast.
    """
    quotes = np.flatnonzero(raw == 34)
    first = np.searchsorted(quotes, layout.starts)  # index of each line's first quote
    counts = np.searchsorted(quotes, layout.stops) - first
    # Parity of the quotes before each quote on its own line.
    opening = ((np.arange(quotes.size) - np.repeat(first, counts)) & 1) == 0
    before = raw[np.maximum(quotes - 1, 0)]
    after = raw[np.minimum(quotes + 1, raw.size - 1)]
    after2 = raw[np.minimum(quotes + 2, raw.size - 1)]
    at_start = (quotes == 0) | (before == 10)
    at_end = (
        (quotes + 1 == raw.size)
        | (after == 10)
        | ((after == 13) & ((quotes + 2 == raw.size) | (after2 == 10)))
    )
    opens_well = at_start | (before == 44) | (before == 34)
    closes_well = at_end | (after == 44) | (after == 34)
    wrong = np.flatnonzero(np.where(opening, ~opens_well, ~closes_well))
    problems: dict[int, str] = {}
    if wrong.size:
        lines = np.searchsorted(layout.stops, quotes[wrong], side="left")
        for i, k in zip(wrong.tolist(), lines.tolist(), strict=True):
            if k not in problems:
                column = int(quotes[i] - layout.starts[k]) + 1
                problems[k] = (
                    f"quote inside an unquoted value at column {column}"
                    if opening[i]
                    else f"text after a closing quote at column {column + 1}"
                )
    for k in np.flatnonzero(counts & 1).tolist():
        problems.setdefault(k, "unterminated quote (a value cannot span lines)")
    return problems


def _order_check(
    ts: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int64],
    last_ts: npt.NDArray[np.float64],
    state: npt.NDArray[np.float64],
    max_ahead_s: float,
    verdict: npt.NDArray[np.int8],
) -> None:
    """Mark rows far ahead of the data time (1) or older than their meter's last row (2).

    Rows in file order; `state[0]` is the data time (latest good row so far, -inf at the
    start), `last_ts` the latest good row per slot; both move on with the accepted rows.
    """
    n = ts.size
    for i in range(n):
        t = ts[i]
        s = slot[i]
        reference = state[0]
        if reference == -np.inf and i + 1 < n:
            reference = ts[i + 1]  # the first row of all: judged by the one after it
        if reference != -np.inf and t > reference + max_ahead_s:
            confirmed = i + 1 < n and slot[i + 1] != s and abs(ts[i + 1] - t) <= max_ahead_s
            if not confirmed:
                verdict[i] = 1
                continue
        if t < last_ts[s]:
            verdict[i] = 2
            continue
        last_ts[s] = t
        if t > state[0]:
            state[0] = t


_order_check_compiled = cast(Callable[..., None], numba.njit(cache=True)(_order_check))


class ReadingsReader:
    """Iterate over readings.csv as ReadingBatches, one per chunk of the file.

    The file may be UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32 with a
    byte-order mark, and gzip-compressed (meterguard.textinput). A line that is not text,
    has malformed quotes or the wrong number of values is a bad row, counted and reported
    with its line number; the lines after it are read as usual. What cannot be read at all
    (a missing file, binary input, no header) raises ReadingsCsvError with file and line.
    """

    def __init__(
        self,
        path: Path,
        registry: MeterRegistry,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_ahead_s: float = MAX_AHEAD_S,
        *,
        arrow: bool = True,
    ) -> None:
        self.path = path
        #: False: every chunk goes to the line-by-line parser, the one Arrow's rows fall
        #: back to (slower; what the fast path is checked against).
        self.arrow = arrow
        self.max_ahead_s = max_ahead_s
        #: Data time of the stream (latest good row) and of each meter's latest good row.
        self._data_time = np.array([-np.inf])
        self._last_ts = np.full(len(registry), -np.inf)
        self.registry = registry
        self.chunk_bytes = max(int(chunk_bytes), 1)
        self.stats = ReadStats()
        #: The line the reader is at, for errors that stop the read (a broken gzip stream).
        self._line = 1
        self._reading = False
        self.bytes_total = checked_size(path, self._fail)
        self.bytes_done = 0
        self._slots: dict[str, int] = {m.id: registry.slot(m.id) for m in registry}

    def _fail(self, line: int | None, reason: str) -> ReadingsCsvError:
        # A failure while reading (a broken gzip stream) is placed where reading stopped.
        where = self._line if line is None and self._reading else line
        return ReadingsCsvError(str(self.path), reason, where)

    def _header(self, source: InputStream) -> tuple[list[str], int, bytes]:
        """Read the header row: the column names, its line number and the bytes after it."""
        data = b""
        line_no = 0
        at_end = False
        while True:
            cut = data.find(b"\n")
            if cut < 0 and not at_end:
                if len(data) > MAX_LINE_BYTES:
                    reason = f"not text (no line break in {MAX_LINE_BYTES} bytes)"
                    raise ReadingsCsvError(str(self.path), reason, line_no + 1)
                block = source.read(1 << 16)
                if block:
                    data += block
                    continue
                at_end = True
            if cut < 0:
                if not data:
                    empty = " (empty file)" if self.bytes_total == 0 else ""
                    raise ReadingsCsvError(str(self.path), f"no header row{empty}", max(line_no, 1))
                cut = len(data)
            line_no += 1
            self._line = line_no
            raw, data = data[:cut], data[cut + 1 :]
            problem = text_problem(raw, source.encoding)
            if problem is not None:
                raise ReadingsCsvError(str(self.path), problem, line_no)
            text = raw.decode("utf-8").removesuffix("\r")
            if "\r" in text:
                raise ReadingsCsvError(
                    str(self.path),
                    "carriage return inside the header line (lines end in LF or CRLF)",
                    line_no,
                )
            if text.strip():
                break
        try:
            names = [c.strip() for c in split_csv_line(text)]
        except ValueError as exc:
            raise ReadingsCsvError(str(self.path), f"header: {exc}", line_no) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise ReadingsCsvError(
                str(self.path), f"missing required column(s): {', '.join(missing)}", line_no
            )
        known = set(QUANTITIES) | {"ts", "meter", "events"}
        twice = sorted({c for c in names if c in known and names.count(c) > 1})
        if twice:
            raise ReadingsCsvError(
                str(self.path), f"column(s) named twice: {', '.join(twice)}", line_no
            )
        return names, line_no, data

    def __iter__(self) -> Iterator[ReadingBatch]:
        with open_input(self.path, self._fail) as source:
            self._reading = True
            self.stats.encoding = source.encoding
            self.stats.compression = source.compression
            names, line_no, rest = self._header(source)
            self.bytes_done = source.bytes_read()
            known = set(QUANTITIES) | {"ts", "meter", "events"}
            self.stats.ignored_columns = [c for c in names if c not in known]
            self._line = line_no + 1
            skipping = False  # inside a line too long to be a row, until its line break
            while True:
                block = source.read(self.chunk_bytes)
                self.bytes_done = source.bytes_read()
                if skipping:
                    cut = block.find(b"\n")
                    if cut < 0 and block:
                        continue
                    block = block[cut + 1 :] if block else b""
                    self._line += 1
                    skipping = False
                data = rest + block
                if not block:
                    if data:
                        yield from self._chunk(data, names, source.encoding)
                    return
                cut = data.rfind(b"\n")
                if cut < 0:
                    if len(data) > MAX_LINE_BYTES:
                        self.stats.rows += 1
                        self.stats.add_bad(self._line, f"line longer than {MAX_LINE_BYTES} bytes")
                        rest = b""
                        skipping = True
                        continue
                    rest = data
                    continue
                chunk, rest = data[: cut + 1], data[cut + 1 :]
                yield from self._chunk(chunk, names, source.encoding)

    def _parse(
        self, chunk: bytes, names: list[str], rows: int
    ) -> tuple[pa.Table, list[tuple[int, str]]] | None:
        """Parse clean lines with Arrow; None if its rows do not match the lines one to one."""
        invalid: list[tuple[int, str]] = []

        def on_invalid(row: Any) -> str:
            if row.number is None:
                raise _RowsUnknownError
            invalid.append(
                (
                    int(row.number),
                    f"expected {row.expected_columns} columns, found {row.actual_columns}",
                )
            )
            return "skip"

        try:
            table = pacsv.read_csv(
                io.BytesIO(chunk),
                read_options=pacsv.ReadOptions(
                    column_names=names,
                    use_threads=False,
                    block_size=min(len(chunk) + 1, PARSE_BLOCK_BYTES),
                ),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in names},
                    strings_can_be_null=True,
                    null_values=[""],  # only a blank cell is "not measured"; `nan` is bad
                ),
            )
        except (pa.ArrowException, _RowsUnknownError):
            return None
        if table.num_rows + len(invalid) != rows:
            return None
        return table, invalid

    def _chunk(self, chunk: bytes, names: list[str], encoding: str) -> Iterator[ReadingBatch]:
        """Read one chunk of whole lines, the first of them at line self._line."""
        first_line = self._line
        raw = np.frombuffer(chunk, dtype=np.uint8)
        layout = _layout(chunk, raw, encoding)
        self._line += layout.stops.size
        numbers = np.arange(first_line, first_line + layout.stops.size, dtype=np.int64)
        usable = ~layout.empty
        bad_rows: list[tuple[int, str]] = []
        if layout.problems:
            cleaned = raw.copy()
            for k, reason in layout.problems.items():
                # Line breaks in place of the line: empty lines, which the parser skips.
                cleaned[layout.starts[k] : layout.stops[k]] = 10
                usable[k] = False
                bad_rows.append((int(numbers[k]), reason))
            chunk = cleaned.tobytes()
        row_lines = numbers[usable]
        self.stats.rows += int(usable.sum()) + len(bad_rows)
        use_arrow = self.arrow and row_lines.size > 0
        parsed = self._parse(chunk, names, row_lines.size) if use_arrow else None
        if parsed is None:
            table, invalid = _parse_lines(chunk, layout, usable, names)
        else:
            table, invalid = parsed
        skipped = np.zeros(row_lines.size, dtype=np.bool_)
        for number, reason in invalid:
            skipped[number - 1] = True
            bad_rows.append((int(row_lines[number - 1]), reason))
        row_lines = row_lines[~skipped]
        yield from self._rows(table, row_lines, names, bad_rows)

    def _rows(
        self,
        table: pa.Table,
        row_lines: npt.NDArray[np.int64],
        names: list[str],
        bad_rows: list[tuple[int, str]],
    ) -> Iterator[ReadingBatch]:
        """Turn the parsed rows into a batch; every bad row goes to the stats by line."""
        n = table.num_rows
        bad = np.zeros(n, dtype=np.bool_)
        reasons: dict[int, str] = {}

        def mark(pairs: list[tuple[int, str]]) -> None:
            for i, reason in pairs:
                if not bad[i]:
                    bad[i] = True
                    reasons[i] = reason

        if n == 0:
            self._report(bad_rows)
            return

        ts, ts_bad = _times(table.column("ts"))
        mark(ts_bad)
        meter_col = table.column("meter")
        encoded = pc.dictionary_encode(meter_col).combine_chunks()
        dictionary = encoded.dictionary.to_pylist()
        lookup = np.array(
            [self._slots.get((m or "").strip(), -1) for m in dictionary] or [-1], dtype=np.int64
        )
        codes = _ints(encoded.indices)
        null_meter = _nulls(meter_col)
        slots = np.where(null_meter, -1, lookup[codes] if len(dictionary) else -1)
        unknown = np.flatnonzero(slots < 0)
        if unknown.size:
            texts = meter_col.take(pa.array(unknown)).to_pylist()
            mark(
                [
                    (int(i), "meter is blank" if t is None else f"unknown meter {t!r}")
                    for i, t in zip(unknown.tolist(), texts, strict=True)
                ]
            )
        values = np.full((len(QUANTITIES), n), np.nan)
        for name in names:
            if name in QUANTITY_INDEX:
                column, col_bad = _numbers(name, table.column(name))
                values[QUANTITY_INDEX[name]] = column
                mark(col_bad)
        events: EventArray = np.zeros(n, dtype=np.uint32)
        unknown_events: dict[int, list[str]] = {}
        if "events" in names:
            ev_col = table.column("events")
            present = np.flatnonzero(~_nulls(ev_col))
            if present.size:
                texts = pc.drop_null(ev_col).to_pylist()  # the present cells, in order
                for i, text in zip(present.tolist(), texts, strict=True):
                    mask, odd = encode_events(text.split(";"))
                    events[i] = mask
                    if odd:
                        unknown_events[i] = odd
                        self.stats.unknown_events.update(odd)
        candidates = np.flatnonzero(~bad)
        verdict = np.zeros(candidates.size, dtype=np.int8)
        _order_check_compiled(
            np.ascontiguousarray(ts[candidates]),
            slots[candidates].astype(np.int64),
            self._last_ts,
            self._data_time,
            float(self.max_ahead_s),
            verdict,
        )
        for k in np.flatnonzero(verdict).tolist():
            i = int(candidates[k])
            bad[i] = True
            if verdict[k] == 1:
                self.stats.ahead += 1
                reasons[i] = (
                    f"ts {float(ts[i])!r} is more than {self.max_ahead_s:.0f} s ahead "
                    "of the stream's data time"
                )
            else:
                self.stats.late += 1
                reasons[i] = f"ts {float(ts[i])!r} is older than the meter's previous reading"
        bad_rows.extend((int(row_lines[i]), reason) for i, reason in reasons.items())
        self._report(bad_rows)
        good = ~bad
        self.stats.good += int(good.sum())
        if not good.any():
            return
        keep = np.flatnonzero(good)
        # A kept row's index in the batch is its rank among the kept rows.
        kept_unknown = {
            int(np.searchsorted(keep, old)): odd for old, odd in unknown_events.items() if good[old]
        }
        yield ReadingBatch(
            ts=ts[keep],
            slot=slots[keep].astype(np.int32),
            values=np.ascontiguousarray(values[:, keep]),
            events=events[keep],
            unknown_events=kept_unknown,
        )

    def _report(self, bad_rows: list[tuple[int, str]]) -> None:
        """Count a chunk's bad rows, in line order (so the first ones reported come first)."""
        for line, reason in sorted(bad_rows):
            self.stats.add_bad(line, reason)


class _RowsUnknownError(Exception):
    """Arrow could not say which row was invalid: the chunk is parsed line by line."""


def _parse_lines(
    chunk: bytes, layout: _LineLayout, usable: npt.NDArray[np.bool_], names: list[str]
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Parse the usable lines one at a time (RFC 4180 within a line), as Arrow would.

    The slow path, for a chunk Arrow's parser did not read one row per line; the rows and
    invalid (row number, reason) pairs come out as from the fast path.
    """
    columns: list[list[str | None]] = [[] for _ in names]
    invalid: list[tuple[int, str]] = []
    for number, k in enumerate(np.flatnonzero(usable).tolist(), start=1):
        text = chunk[layout.starts[k] : layout.ends[k]].decode("utf-8")
        try:
            fields = split_csv_line(text)
        except ValueError as exc:
            invalid.append((number, str(exc)))
            continue
        if len(fields) != len(names):
            invalid.append((number, f"expected {len(names)} columns, found {len(fields)}"))
            continue
        for column, value in zip(columns, fields, strict=True):
            column.append(value or None)
    arrays = [pa.array(column, type=pa.string()) for column in columns]
    return pa.Table.from_arrays(arrays, names=names), invalid
