"""One SQLite connection owned by one thread, so async code never blocks on the file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class SqliteWorker:
    """Runs functions against a WAL-mode SQLite database on a dedicated thread."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")
        self._conn = self._executor.submit(self._open, path, schema).result()

    @staticmethod
    def _open(path: Path, schema: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode; only power loss can lose
        # the last transactions, which a monitoring store tolerates.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(schema)
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(connection) on the store's thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn)

    def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(connection) on the store's thread from synchronous code."""
        return self._executor.submit(fn, self._conn).result()

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        await self.run(lambda c: c.close())
        self._executor.shutdown(wait=True)
