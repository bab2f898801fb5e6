"""The transformer view's hourly balance: time to answer for a transformer's day and week.

A transformer with one check meter and --customers customer meters, each sending one
reading a minute for a week, in the embedded (SQLite) series store; the balance is asked
for the last 24 h and the whole week (api/transformers.py: each meter's 5-minute mean
power, summed per hour), best of --rounds.

Usage: .venv/bin/python bench/transformer_balance.py [--customers 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from api.transformers import balance, window
from meterguard.losses import LossTerms
from meterguard.model import QUANTITY_INDEX, Meter, MeterRegistry, ReadingBatch
from meterguard.stores.sqlite_series import SqliteSeriesStore

WEEK_S = 7 * 86_400
STEP_S = 60.0
#: 2026-01-05T00:00:00Z, a Monday.
START = 1_767_571_200.0


def fleet(customers: int) -> list[Meter]:
    """Return the transformer's check meter and its customers."""
    feeder = Meter(id="F", service="3p4w", nominal_v=230, role="feeder", transformer="T")
    return [feeder] + [
        Meter(id=f"C{i:03d}", service="3p4w", nominal_v=230, transformer="T")
        for i in range(customers)
    ]


def day_batches(meters: int, rng: np.random.Generator) -> list[ReadingBatch]:
    """Return a week of one-minute readings of every meter, one batch per day."""
    steps = int(WEEK_S / STEP_S)
    out = []
    for day in range(7):
        k = np.arange(day * 1440, (day + 1) * 1440)
        rows = len(k) * meters
        b = ReadingBatch.empty(rows)
        b.ts[:] = np.repeat(START + k * STEP_S, meters)
        b.slot[:] = np.tile(np.arange(meters, dtype=np.int32), len(k))
        power = rng.uniform(200, 800, size=(3, rows)).astype(np.float32)
        b.values[QUANTITY_INDEX["p1"] : QUANTITY_INDEX["p1"] + 3] = power
        out.append(b)
    assert sum(len(b) for b in out) == steps * meters
    return out


async def run(customers: int, rounds: int) -> None:
    """Fill a store, then time the balance for a day and a week."""
    meters = fleet(customers)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteSeriesStore(Path(tmp) / "series.sqlite", MeterRegistry(meters))
        t0 = time.perf_counter()
        for batch in day_batches(len(meters), np.random.default_rng(1)):
            await store.write(batch)
        await store.commit()
        fill = time.perf_counter() - t0
        readings = int(WEEK_S / STEP_S) * len(meters)
        print(
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()},"
            f" SQLite {sqlite3.sqlite_version}"
        )
        print(f"stored {readings:,} readings of {len(meters)} meters in {fill:.1f} s")
        end = START + WEEK_S - 1
        for hours in (24, 168):
            best = float("inf")
            for _ in range(rounds):
                t = time.perf_counter()
                rows = await balance(store, meters, window(end, hours), hours, LossTerms())
                best = min(best, time.perf_counter() - t)
            assert sum(r.complete for r in rows) == hours
            print(f"balance of {hours:>3} h: {best * 1000:,.0f} ms (best of {rounds})")
        await store.close()


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.customers, args.rounds))


if __name__ == "__main__":
    main()
