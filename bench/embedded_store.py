"""Embedded (SQLite) series store: readings/s written, and query time for a week of a meter.

Write: the store fed ReadingBatches (one per poll cycle of the fleet) against a bare
sqlite3 executemany of prebuilt tuples into the same table, with the same file settings
and transaction size, in the same run.
Query: a week of one meter at 5 s (120,960 readings) among --week-meters meters, raw and
downsampled to 1,000 points.

Usage: .venv/bin/python bench/embedded_store.py [--meters 1000] [--steps 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from meterguard.model import QUANTITIES, Meter, MeterRegistry, ReadingBatch
from meterguard.stores.sqlite_series import _INSERT, SCHEMA, SqliteSeriesStore

WEEK_S = 7 * 86_400
STEP_S = 5.0


def registry_of(n: int) -> MeterRegistry:
    """Return a registry of n three-phase meters."""
    return MeterRegistry([Meter(id=f"M{i:05d}", service="3p4w", nominal_v=230) for i in range(n)])


def batches_of(
    meters: int, steps: int, start: float, rng: np.random.Generator
) -> list[ReadingBatch]:
    """Return one batch per poll cycle: every meter, every quantity but the neutral current."""
    out = []
    for k in range(steps):
        b = ReadingBatch.empty(meters)
        b.ts[:] = start + k * STEP_S
        b.slot[:] = np.arange(meters, dtype=np.int32)
        b.values[:] = rng.normal(230, 3, size=(len(QUANTITIES), meters)).astype(np.float32)
        b.values[6] = np.nan  # neutral current not measured
        out.append(b)
    return out


def bare_write(path: Path, rows: list[tuple[object, ...]], per_tx: int) -> float:
    """Return the seconds a bare executemany of prebuilt rows takes, per_tx rows a commit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")  # as the store sets it
    conn.executescript(SCHEMA)
    start = time.perf_counter()
    for i in range(0, len(rows), per_tx):
        with conn:
            conn.execute("BEGIN")
            conn.executemany(_INSERT, rows[i : i + per_tx])
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def store_write(path: Path, registry: MeterRegistry, batches: list[ReadingBatch]) -> float:
    """Return the seconds the store takes to write and commit every batch."""
    store = SqliteSeriesStore(path, registry)
    try:
        start = time.perf_counter()
        for b in batches:
            await store.write(b)
        await store.commit()  # the last partial transaction counts too
        return time.perf_counter() - start
    finally:
        await store.close()


async def main() -> None:
    """Run the write rounds and the week query; print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--week-meters", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="write runs; the median counts")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    registry = registry_of(args.meters)
    batches = batches_of(args.meters, args.steps, 1_700_000_000.0, rng)
    n = args.meters * args.steps
    ids = [m.id for m in registry]
    # The bare loop gets its tuples for free: built before its clock starts.
    prebuilt = [
        (ids[int(s)], float(t), *vals, int(e))
        for b in batches
        for s, t, vals, e in zip(b.slot, b.ts, b.values.T.tolist(), b.events, strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="mg-bench-") as tmp:
        folder = Path(tmp)
        bare_runs, store_runs = [], []
        for r in range(args.rounds):
            # Transactions as large as the store's default grouping.
            bare_runs.append(bare_write(folder / f"bare{r}.sqlite", prebuilt, 50_000))
            store_runs.append(await store_write(folder / f"store{r}.sqlite", registry, batches))
        bare_s, store_s = statistics.median(bare_runs), statistics.median(store_runs)

        week_registry = registry_of(args.week_meters)
        week_steps = int(WEEK_S / STEP_S)
        store = SqliteSeriesStore(folder / "week.sqlite", week_registry)
        try:
            for chunk in range(0, week_steps, 2000):
                steps = min(2000, week_steps - chunk)
                for b in batches_of(args.week_meters, steps, 1_700_000_000.0 + chunk * STEP_S, rng):
                    await store.write(b)
            end = 1_700_000_000.0 + WEEK_S - STEP_S
            timings = {}
            for label, points in (("raw", None), ("1,000 points", 1000)):
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    series = await store.query(
                        "M00003", 1_700_000_000.0, end, ["v1", "p1", "i1"], points
                    )
                    best = min(best, time.perf_counter() - t0)
                timings[label] = (best, len(series.ts))
        finally:
            await store.close()

    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(
        f"write: {n:,} readings ({args.meters} meters x {args.steps} cycles,"
        f" {len(QUANTITIES)} quantities), median of {args.rounds} runs"
    )
    print("| path | readings/s | ratio to bare loop |")
    print("|---|---:|---:|")
    print(f"| bare sqlite3 executemany, prebuilt tuples | {n / bare_s:,.0f} | 1.00 |")
    print(
        f"| SqliteSeriesStore.write(ReadingBatch) | {n / store_s:,.0f} | {bare_s / store_s:.2f} |"
    )
    print(
        f"\nquery: one meter's week at {STEP_S:.0f} s among {args.week_meters} meters (v1, p1, i1)"
    )
    print("| query | rows returned | time (best of 3) |")
    print("|---|---:|---:|")
    for label, (seconds, rows) in timings.items():
        print(f"| {label} | {rows:,} | {seconds * 1000:.0f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
