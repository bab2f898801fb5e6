"""Read readings.csv (formats/TELEMETRY.md) in chunks into ReadingBatches, counting bad rows.

Strict about meaning (a value that is not a finite number, an unknown meter, a time that
is not a finite epoch or RFC 3339 time makes the row bad), forgiving about layout (column
order free, optional columns missing, blank = not measured). Time order is checked too: a
row more than MAX_AHEAD_S ahead of the stream's data time (a meter with a broken clock) and
a row older than its meter's previous good row (a late row) are bad rows, so that neither
can move the engine's data time or a detector's window the wrong way. A bad row is counted
and reported with its line number; the rest of the file flows on.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

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

REQUIRED_COLUMNS = ("ts", "meter")
#: Bad rows kept with their reasons (all are counted).
MAX_REPORTED_BAD_ROWS = 1000
DEFAULT_CHUNK_BYTES = 16 << 20
#: A row this far ahead of the stream's data time (the latest good row before it) is bad,
#: unless the next row, from another meter, confirms the jump (a recording with a gap).
MAX_AHEAD_S = 86_400.0


class ReadingsCsvError(MeterguardError, ValueError):
    """readings.csv cannot be read at all (no header, a required column missing)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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

    def add_bad(self, line: int, reason: str) -> None:
        """Count a bad row and keep it for the report while there is room."""
        self.bad += 1
        if len(self.bad_rows) < MAX_REPORTED_BAD_ROWS:
            self.bad_rows.append(BadRow(line, reason))


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
    n = len(column)
    try:
        as_float = pc.cast(column, pa.float64())
        values = as_float.to_numpy(zero_copy_only=False).astype(np.float64)
        nulls = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=np.bool_)
        bad = [
            (i, "ts is blank" if nulls[i] else f"ts {float(values[i])!r} is not finite")
            for i in np.flatnonzero(~np.isfinite(values)).tolist()
        ]
        values[~np.isfinite(values)] = np.nan
        return values, bad
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        stamps = pc.cast(column, pa.timestamp("us", tz="UTC"))
        micro = pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False)
        values = np.asarray(micro, dtype=np.float64) / 1e6
        nulls = np.asarray(pc.is_null(stamps).to_numpy(zero_copy_only=False), dtype=np.bool_)
        values[nulls] = np.nan
        return values, [(i, "ts is blank") for i in np.flatnonzero(nulls).tolist()]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
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


def _numbers(
    name: str, column: pa.ChunkedArray | pa.Array
) -> tuple[npt.NDArray[np.float64], list[tuple[int, str]]]:
    """Turn a numeric column into floats (blank: NaN); returns the bad (row, reason) pairs.

    A value that is not finite (`inf`, `nan`, `1e400`) makes the row bad, whichever path
    parsed it: only a blank cell means "not measured".
    """
    try:
        values = np.asarray(
            pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        odd = np.flatnonzero(~np.isfinite(values))
        if odd.size == 0:
            return values, []
        texts = column.take(pa.array(odd)).to_pylist()
        pairs = [
            (int(i), f"{name} {t!r} is not finite")
            for i, t in zip(odd.tolist(), texts, strict=True)
            if t is not None
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


def _line_numbers(chunk: bytes, first_line: int) -> npt.NDArray[np.int64]:
    """Return the file line numbers of the chunk's non-empty lines.

    The CSV parser skips empty lines, so its row numbers count only these.
    """
    raw = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if len(chunk) and chunk[-1:] != b"\n":
        ends = np.append(ends, len(chunk))
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    length = ends - starts
    carriage_only = (length == 1) & (raw[np.minimum(starts, max(len(raw) - 1, 0))] == 13)
    empty = (length == 0) | carriage_only
    numbers: npt.NDArray[np.int64] = np.flatnonzero(~empty).astype(np.int64) + first_line
    return numbers


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
    """Iterate over readings.csv as ReadingBatches, one per chunk of the file."""

    def __init__(
        self,
        path: Path,
        registry: MeterRegistry,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_ahead_s: float = MAX_AHEAD_S,
    ) -> None:
        self.path = path
        self.max_ahead_s = max_ahead_s
        #: Data time of the stream (latest good row) and of each meter's latest good row.
        self._data_time = np.array([-np.inf])
        self._last_ts = np.full(len(registry), -np.inf)
        self.registry = registry
        self.chunk_bytes = chunk_bytes
        self.stats = ReadStats()
        self.bytes_total = path.stat().st_size
        self.bytes_done = 0
        self._slots: dict[str, int] = {m.id: registry.slot(m.id) for m in registry}

    def _header(self, handle: BinaryIO) -> tuple[list[str], int]:
        """Read the header row; return the column names and the header's line number."""
        for line_no, raw in enumerate(handle, start=1):
            self.bytes_done += len(raw)
            text = raw.decode("utf-8-sig").strip()
            if text:
                names = [c.strip() for c in next(csv.reader([text]))]
                missing = [c for c in REQUIRED_COLUMNS if c not in names]
                if missing:
                    raise ReadingsCsvError(
                        str(self.path), f"missing required column(s): {', '.join(missing)}"
                    )
                return names, line_no
        raise ReadingsCsvError(str(self.path), "no header row")

    def __iter__(self) -> Iterator[ReadingBatch]:
        with self.path.open("rb") as handle:
            names, line_no = self._header(handle)
            known = set(QUANTITIES) | {"ts", "meter", "events"}
            self.stats.ignored_columns = [c for c in names if c not in known]
            next_line = line_no + 1
            rest = b""
            while True:
                block = handle.read(self.chunk_bytes)
                self.bytes_done += len(block)
                data = rest + block
                if not block:
                    if data.strip():
                        yield from self._chunk(data, names, next_line)
                    return
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                chunk, rest = data[: cut + 1], data[cut + 1 :]
                batch_lines = chunk.count(b"\n")
                if chunk.strip():  # a chunk of empty lines has no rows for the parser
                    yield from self._chunk(chunk, names, next_line)
                next_line += batch_lines

    def _chunk(self, chunk: bytes, names: list[str], first_line: int) -> Iterator[ReadingBatch]:
        lines = _line_numbers(chunk, first_line)
        invalid: list[tuple[int, str]] = []

        def on_invalid(row: Any) -> str:
            invalid.append((int(row.number) if row.number is not None else -1, row.text))
            return "skip"

        table = pacsv.read_csv(
            io.BytesIO(chunk),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=len(chunk) + 1
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                strings_can_be_null=True,
                null_values=[""],  # only a blank cell is "not measured"; `nan` is bad
            ),
        )
        skipped = np.zeros(lines.size, dtype=np.bool_)
        for number, _text in invalid:
            if 1 <= number <= lines.size:
                skipped[number - 1] = True
                self.stats.add_bad(int(lines[number - 1]), f"expected {len(names)} columns")
            else:
                self.stats.add_bad(-1, f"expected {len(names)} columns")
        row_lines = lines[~skipped]
        n = table.num_rows
        self.stats.rows += n + len(invalid)
        if row_lines.size != n:  # quoted line breaks: numbers can no longer be told
            row_lines = np.full(n, -1, dtype=np.int64)
        bad = np.zeros(n, dtype=np.bool_)
        reasons: dict[int, str] = {}

        def mark(pairs: list[tuple[int, str]]) -> None:
            for i, reason in pairs:
                if not bad[i]:
                    bad[i] = True
                    reasons[i] = reason

        ts, ts_bad = _times(table.column("ts"))
        mark(ts_bad)
        meter_col = table.column("meter")
        encoded = pc.dictionary_encode(meter_col).combine_chunks()
        dictionary = encoded.dictionary.to_pylist()
        lookup = np.array(
            [self._slots.get((m or "").strip(), -1) for m in dictionary] or [-1], dtype=np.int64
        )
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        null_meter = np.asarray(pc.is_null(meter_col).to_numpy(zero_copy_only=False), bool)
        codes = np.where(null_meter, 0, np.nan_to_num(codes)).astype(np.int64)
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
            present = np.flatnonzero(
                ~np.asarray(pc.is_null(ev_col).to_numpy(zero_copy_only=False), bool)
            )
            if present.size:
                texts = ev_col.take(pa.array(present)).to_pylist()
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
        for i in sorted(reasons):
            self.stats.add_bad(int(row_lines[i]), reasons[i])
        good = ~bad
        self.stats.good += int(good.sum())
        if not good.any():
            return
        keep = np.flatnonzero(good)
        remap = {int(old): new for new, old in enumerate(keep.tolist()) if old in unknown_events}
        yield ReadingBatch(
            ts=ts[keep],
            slot=slots[keep].astype(np.int32),
            values=np.ascontiguousarray(values[:, keep]),
            events=events[keep],
            unknown_events={new: unknown_events[old] for old, new in remap.items()},
        )
