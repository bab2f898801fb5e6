"""The embedded series store: readings in one SQLite (WAL) table keyed by meter and time."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from meterguard.model import QUANTITIES, MeterRegistry, ReadingBatch
from meterguard.stores import Series, check_query
from meterguard.stores.sqlite_worker import SqliteWorker

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
# A later row for a (meter, ts) already stored fills in what it carries and keeps the rest,
# as InfluxDB merges the fields of one point: a reading split over two messages (or a
# resend with fewer quantities) never erases values. Event bits accumulate.
_INSERT = (
    "INSERT INTO readings (meter, ts, "
    + ", ".join(f'"{q}"' for q in QUANTITIES)
    + f", events) VALUES ({_PLACEHOLDERS}) ON CONFLICT (meter, ts) DO UPDATE SET "
    + ", ".join(f'"{q}" = COALESCE(excluded."{q}", "{q}")' for q in QUANTITIES)
    + ", events = events | excluded.events"
)
log = logging.getLogger(__name__)

_DAY_S = 86_400.0
#: How often (wall-clock seconds) writes check for readings past the retention period.
PRUNE_EVERY_S = 3_600.0


def bucket_width_s(start: float, end: float, points: int) -> float:
    """Return the bucket width (whole milliseconds) that splits a window into <= points.

    Both ends of the window are inclusive, so the width is a little over span / points.
    """
    return (math.floor((end - start) * 1000 / points) + 1) / 1000.0


class SqliteSeriesStore:
    """Series store in a local SQLite file; a rewritten (meter, ts) merges, never doubles.

    Writes are grouped: batches collect in memory until `commit_rows` readings or
    `commit_interval_s` seconds, then go in one transaction. One poll cycle touches the
    newest page of every meter's key range, so committing many cycles at once (with a page
    cache that holds those pages) is what makes the file fast; a crash can lose at most the
    last `commit_interval_s` of readings. Queries and count() commit what is pending first.

    With `retention_days` > 0, readings older than that (in data time, against the wall
    clock) are deleted by `prune()`, which writes run at most once per PRUNE_EVERY_S.
    """

    def __init__(
        self,
        path: Path,
        registry: MeterRegistry,
        retention_days: float = 0,
        *,
        commit_rows: int = 50_000,
        commit_interval_s: float = 1.0,
    ) -> None:
        self._registry = registry
        self._worker = SqliteWorker(path, SCHEMA)
        # 64 MB of page cache holds the newest page of ~16,000 meters' key ranges.
        self._worker.run_sync(lambda c: c.execute("PRAGMA cache_size=-65536"))
        self.retention_days = retention_days
        self.commit_rows = commit_rows
        self.commit_interval_s = commit_interval_s
        self._ids = [m.id for m in registry]
        self._pending: list[list[list[Any]]] = []
        self._pending_rows = 0
        self._timer: asyncio.Task[None] | None = None
        # The first write prunes (whatever the machine's uptime), later ones hourly.
        self._last_prune = -math.inf
        #: Readings deleted by retention since the store opened.
        self.pruned = 0

    async def write(self, batch: ReadingBatch) -> None:
        """Accept every row of a batch; it is committed with others within commit_interval_s."""
        if len(batch) == 0:
            return
        ids = self._ids
        meters = [ids[s] for s in batch.slot.tolist()]
        # SQLite stores a NaN parameter as NULL: "not measured" needs no conversion.
        self._pending.append(
            [meters, batch.ts.tolist(), *batch.values.tolist(), batch.events.tolist()]
        )
        self._pending_rows += len(batch)
        if self._pending_rows >= self.commit_rows:
            await self.commit()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._commit_later())
        if self.retention_days > 0 and time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            await self.prune()

    async def _commit_later(self) -> None:
        await asyncio.sleep(self.commit_interval_s)
        try:
            await self.commit()
        except sqlite3.Error:
            log.exception("series commit failed")
            raise

    async def commit(self) -> None:
        """Write every pending reading in one transaction."""
        if not self._pending:
            return
        pending, rows = self._pending, self._pending_rows
        self._pending, self._pending_rows = [], 0

        def insert(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(
                    _INSERT, itertools.chain.from_iterable(zip(*c, strict=True) for c in pending)
                )

        try:
            await self._worker.run(insert)
        except sqlite3.Error:
            # Rolled back: keep the readings, ahead of newer ones, for the next commit.
            self._pending = pending + self._pending
            self._pending_rows += rows
            raise

    async def prune(self, now: float | None = None) -> int:
        """Delete readings older than the retention period; return how many went."""
        self._last_prune = time.monotonic()
        if self.retention_days <= 0:
            return 0
        await self.commit()
        cutoff = (time.time() if now is None else now) - self.retention_days * _DAY_S

        def delete(conn: sqlite3.Connection) -> int:
            meters = [r[0] for r in conn.execute("SELECT DISTINCT meter FROM readings")]
            gone = 0
            with conn:
                conn.execute("BEGIN")
                # Per meter, so each delete walks the (meter, ts) primary key.
                for meter in meters:
                    cur = conn.execute(
                        "DELETE FROM readings WHERE meter = ? AND ts < ?", (meter, cutoff)
                    )
                    gone += cur.rowcount
            return gone

        gone = await self._worker.run(delete)
        self.pruned += gone
        return gone

    async def ping(self) -> None:
        """Read nothing from the readings table: the file opens and its schema is there."""
        await self.query("", 0.0, 0.0, [])

    async def query(
        self,
        meter: str,
        start: float,
        end: float,
        fields: Sequence[str],
        points: int | None = None,
    ) -> Series:
        """Return a meter's fields between start and end, in time order, bucketed if asked."""
        check_query(fields, points)
        args: tuple[float | str, ...]
        if points is None:
            columns = "".join(f', "{f}"' for f in fields)
            sql = (
                f"SELECT ts{columns} FROM readings "
                "WHERE meter = ? AND ts BETWEEN ? AND ? ORDER BY ts"
            )
            args = (meter, start, end)
        else:
            width = bucket_width_s(start, end, points)
            columns = "".join(f', AVG("{f}")' for f in fields)
            sql = (
                f"SELECT ? + CAST((ts - ?) / ? AS INTEGER) * ? AS bucket{columns} "
                "FROM readings WHERE meter = ? AND ts BETWEEN ? AND ? "
                "GROUP BY bucket ORDER BY bucket"
            )
            args = (start, start, width, width, meter, start, end)

        def select(conn: sqlite3.Connection) -> list[tuple[float, ...]]:
            return conn.execute(sql, args).fetchall()

        await self.commit()
        rows = await self._worker.run(select)
        table = np.array(rows, dtype=np.float64).reshape(len(rows), len(fields) + 1)
        return Series(
            meter=meter,
            ts=table[:, 0].copy(),
            values={f: table[:, i + 1].copy() for i, f in enumerate(fields)},
        )

    async def count(self) -> int:
        """Return how many readings the store holds."""
        await self.commit()
        row = await self._worker.run(
            lambda c: c.execute("SELECT COUNT(*) FROM readings").fetchone()
        )
        return int(row[0])

    async def close(self) -> None:
        """Commit what is pending and close the database file."""
        if self._timer is not None:
            self._timer.cancel()
        await self.commit()
        await self._worker.close()
