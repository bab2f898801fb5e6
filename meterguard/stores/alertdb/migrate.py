"""Run the Alembic migrations of the alert database on an async engine."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

import meterguard.migrations

#: Any fixed number: PostgreSQL advisory lock key that serialises concurrent upgrades.
_UPGRADE_LOCK = 0x6D67_0001


#: Alembic keeps module-level state while it runs: one upgrade at a time per event loop.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def alembic_config() -> Config:
    """Return an Alembic config that points at meterguard's migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(meterguard.migrations.__file__).parent))
    return cfg


def head_revision() -> str:
    """Return the newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes starting together must not both create the schema.
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})"))
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database schema up to a revision (the newest by default)."""
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        if engine.dialect.name == "sqlite":
            await _upgrade_sqlite(engine.url, revision)
            return
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, revision)


async def _upgrade_sqlite(url: URL, revision: str) -> None:
    """Migrate a SQLite file in one transaction, one process at a time.

    pysqlite runs DDL outside any transaction unless told otherwise, so a process dying
    mid-migration would leave tables without their alembic_version row, and two first
    starts would both create them. SQLAlchemy's recipe for transactional DDL on pysqlite
    (the driver's own BEGIN switched off, an explicit one emitted) makes the migration all
    or nothing; a lock file beside the database makes concurrent starts take turns.
    """
    migrator = create_async_engine(url, poolclass=NullPool)
    event.listen(migrator.sync_engine, "connect", _sqlite_manual_transactions)
    event.listen(migrator.sync_engine, "begin", _sqlite_begin_immediate)
    try:
        async with _file_lock(url.database), migrator.begin() as conn:
            await conn.run_sync(_upgrade, revision)
    finally:
        await migrator.dispose()


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at once: a reader-turned-writer cannot deadlock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.asynccontextmanager
async def _file_lock(database: str | None) -> AsyncIterator[None]:
    """Hold an exclusive flock on `<database>.migrate-lock` (nothing for :memory:)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    fd = os.open(f"{database}.migrate-lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        # Closing the descriptor releases the lock, also if this process dies.
        os.close(fd)


async def current_revision(engine: AsyncEngine) -> str | None:
    """Return the revision the database is at (None: no schema yet)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
