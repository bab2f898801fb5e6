"""The embedded series store: readings in one SQLite (WAL) table keyed by meter and time."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from meterguard.model import QUANTITIES, MeterRegistry, ReadingBatch
from meterguard.stores import Series

_COLUMNS = ", ".join(f'"{q}" REAL' for q in QUANTITIES)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS readings (
    meter TEXT NOT NULL,
    ts REAL NOT NULL,
    {_COLUMNS},
    events INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (meter, ts)
) WITHOUT ROWID;
"""
_PLACEHOLDERS = ", ".join("?" for _ in range(len(QUANTITIES) + 3))
_INSERT = (
    "INSERT OR REPLACE INTO readings (meter, ts, "
    + ", ".join(f'"{q}"' for q in QUANTITIES)
    + f", events) VALUES ({_PLACEHOLDERS})"
)


class SqliteSeriesStore:
    """Series store in a local SQLite file; a rewritten (meter, ts) replaces, never doubles."""

    def __init__(self, path: Path, registry: MeterRegistry) -> None:
        from meterguard.stores.sqlite_worker import SqliteWorker

        self._registry = registry
        self._worker = SqliteWorker(path, SCHEMA)

    def _rows(self, batch: ReadingBatch) -> list[list[object]]:
        values = batch.values.T.astype(object)
        values[np.isnan(batch.values.T)] = None
        ids = [self._registry.by_slot(int(s)).id for s in batch.slot]
        rows = values.tolist()
        ts = batch.ts.tolist()
        events = batch.events.tolist()
        return [[ids[i], ts[i], *rows[i], events[i]] for i in range(len(batch))]

    async def write(self, batch: ReadingBatch) -> None:
        """Store every row of a batch in one transaction."""
        if len(batch) == 0:
            return
        rows = self._rows(batch)

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(_INSERT, rows)

        await self._worker.run(insert)

    async def query(self, meter: str, start: float, end: float, fields: Sequence[str]) -> Series:
        """Return a meter's fields between start and end, in time order."""
        unknown = [f for f in fields if f not in QUANTITIES]
        if unknown:
            raise ValueError(f"unknown quantities: {', '.join(unknown)}")
        columns = ", ".join(f'"{f}"' for f in fields)
        sql = (
            f"SELECT ts{', ' + columns if columns else ''} FROM readings "
            "WHERE meter = ? AND ts BETWEEN ? AND ? ORDER BY ts"
        )

        def select(conn: sqlite3.Connection) -> list[tuple[float, ...]]:
            return conn.execute(sql, (meter, start, end)).fetchall()

        rows = await self._worker.run(select)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(fields) + 1)
        return Series(
            meter=meter,
            ts=table[:, 0].copy(),
            values={f: table[:, i + 1].copy() for i, f in enumerate(fields)},
        )

    async def count(self) -> int:
        """Return how many readings the store holds."""
        row = await self._worker.run(
            lambda c: c.execute("SELECT COUNT(*) FROM readings").fetchone()
        )
        return int(row[0])

    async def close(self) -> None:
        """Close the database file."""
        await self._worker.close()
