"""Properties of the readings.csv reader on arbitrary bytes and on damaged valid files.

Whatever the input, the reader either reads it or stops with ReadingsCsvError; every row
is read or counted bad once, with a line number inside the file; and damage to one line
never costs the good rows around it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterguard.model import QUANTITY_INDEX, Meter, MeterRegistry, ReadingBatch
from service.telemetry_csv import ReadingsCsvError, ReadingsReader, ReadStats
from tests.tiers import examples

FLEET = MeterRegistry([Meter(id=m, service="3p4w", nominal_v=230) for m in ("A", "B", "C")])
HEADER = b"ts,meter,v1,i1,events\n"
T0 = 1_767_571_200
SETTINGS = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass
class Outcome:
    """What a read gave: the rows used, the stats, or the error that stopped it."""

    batch: ReadingBatch | None
    stats: ReadStats
    error: ReadingsCsvError | None


@contextmanager
def _file(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "readings.csv"
        path.write_bytes(data)
        yield path


def _read(data: bytes, chunk: int, slow: bool = False) -> Outcome:
    with _file(data) as path:
        # slow: the line-by-line parser, as if Arrow had not read one row per line.
        reader = ReadingsReader(path, FLEET, chunk_bytes=chunk, arrow=not slow)
        try:
            batches = list(reader)
        except ReadingsCsvError as exc:
            return Outcome(None, reader.stats, exc)
    batch = ReadingBatch.concat(batches) if batches else None
    return Outcome(batch, reader.stats, None)


def _check_counts(outcome: Outcome, data: bytes) -> None:
    """Every row is used or bad, once, at a line the file has."""
    stats = outcome.stats
    used = 0 if outcome.batch is None else len(outcome.batch)
    assert stats.good == used
    lines = [b.line for b in stats.bad_rows]
    assert len(lines) == len(set(lines)) == stats.bad
    assert lines == sorted(lines)
    last_line = data.count(b"\n") + 1
    assert all(1 <= line <= last_line for line in lines)
    if outcome.error is None:
        assert stats.rows == stats.good + stats.bad
    elif outcome.error.line is not None:
        assert 1 <= outcome.error.line <= last_line


@given(data=st.binary(max_size=2000), chunk=st.integers(1, 300))
@SETTINGS
def test_arbitrary_bytes_are_read_or_refused(data: bytes, chunk: int) -> None:
    _check_counts(_read(data, chunk), data)


@given(body=st.binary(max_size=2000), chunk=st.integers(1, 300))
@SETTINGS
def test_arbitrary_bytes_after_a_header_are_rows_or_bad_rows(body: bytes, chunk: int) -> None:
    data = HEADER + body
    outcome = _read(data, chunk)
    if outcome.error is not None:
        # Only what stops a read as a whole: the body cannot be, so nothing may stop it.
        pytest.fail(f"a body stopped the read: {outcome.error}")
    _check_counts(outcome, data)


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[list[bytes], list[tuple[float, str, float]]]:
    """Draw a good readings.csv as lines (header first) and each row's (ts, meter, v1)."""
    n = draw(st.integers(1, 30))
    quote_all = draw(st.booleans())
    crlf = draw(st.booleans())
    # A fleet's stream interleaves its meters: the reader's time checks rely on that.
    meters = ["ABC"[k % 3] for k in range(draw(st.integers(0, 2)), n + 3)][:n]
    v1 = draw(st.lists(st.integers(0, 400_000), min_size=n, max_size=n))
    events = draw(
        st.lists(st.sampled_from(["", "cover_open", "power_down;power_up"]), min_size=n, max_size=n)
    )
    lines = [HEADER.rstrip(b"\n")]
    rows = []
    for k in range(n):
        fields = [str(T0 + 60 * k), meters[k], f"{v1[k] / 1000:.3f}", "5", events[k]]
        if quote_all:
            fields = [f'"{f}"' for f in fields]
        lines.append(",".join(fields).encode())
        rows.append((float(T0 + 60 * k), meters[k], v1[k] / 1000))
    end = b"\r\n" if crlf else b"\n"
    return [line + end for line in lines], rows


@st.composite
def damage(draw: st.DrawFn, lines: list[bytes]) -> tuple[bytes, int, int]:
    """Damage one data line: a stray quote, a cut, or random bytes.

    Returns the file, the index of the damaged line and how many line breaks were added.
    """
    k = draw(st.integers(1, len(lines) - 1))
    line = lines[k]
    how = draw(st.sampled_from(["quote", "cut", "bytes"]))
    if how == "cut":
        at = draw(st.integers(0, len(line.rstrip(b"\r\n"))))
        damaged = line[:at] + b"\n"
        insert = b""
    else:
        at = draw(st.integers(0, len(line) - 1))
        insert = b'"' if how == "quote" else draw(st.binary(min_size=1, max_size=6))
        damaged = line[:at] + insert + line[at:]
    return b"".join([*lines[:k], damaged, *lines[k + 1 :]]), k, insert.count(b"\n")


@given(data=st.data(), chunk=st.integers(1, 400))
@SETTINGS
def test_damage_to_one_line_keeps_every_other_good_row(data: st.DataObject, chunk: int) -> None:
    lines, rows = data.draw(valid_files())
    damaged, k, added = data.draw(damage(lines))
    slow = data.draw(st.booleans())
    outcome = _read(damaged, chunk, slow)
    assert outcome.error is None, outcome.error
    _check_counts(outcome, damaged)
    assert outcome.batch is not None or len(rows) == 1
    got = (
        {}
        if outcome.batch is None
        else dict(
            zip(
                outcome.batch.ts.tolist(),
                zip(
                    outcome.batch.slot.tolist(),
                    outcome.batch.values[QUANTITY_INDEX["v1"]].tolist(),
                    strict=True,
                ),
                strict=True,
            )
        )
    )
    for j, (ts, meter, v1) in enumerate(rows, start=1):
        if j == k:
            continue  # the damaged row may be read (with other values) or be bad
        assert got.get(ts) == (FLEET.slot(meter), v1), f"row of line {j + 1} lost"
    # Only the damaged line (now maybe several) is bad; it is line k + 1 after the header.
    assert all(k + 1 <= b.line <= k + 1 + added for b in outcome.stats.bad_rows)


@given(data=st.data(), chunk=st.integers(1, 400))
@SETTINGS
def test_both_parsers_agree(data: st.DataObject, chunk: int) -> None:
    lines, _rows = data.draw(valid_files())
    damaged, _k, _added = data.draw(damage(lines))
    fast, slow = _read(damaged, chunk), _read(damaged, chunk, slow=True)
    assert fast.stats == slow.stats
    if fast.batch is None or slow.batch is None:
        assert fast.batch is slow.batch is None
        return
    assert np.array_equal(fast.batch.ts, slow.batch.ts)
    assert np.array_equal(fast.batch.values, slow.batch.values, equal_nan=True)
    assert np.array_equal(fast.batch.events, slow.batch.events)
