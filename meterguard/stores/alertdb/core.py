"""The alert database's core, shared by its repositories: engine, migrations, transactions."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from meterguard.clock import Clock, wall_time
from meterguard.errors import StoreUnavailableError
from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.migrate import upgrade

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A fetched row, or one the code completed itself.
Row = sa.RowMapping | dict[str, Any]

#: The actor recorded in the audit log for what the detector engine does.
ENGINE_ACTOR = "engine"

#: Names of driver errors that mean "the server went away", whatever the driver wraps them in.
_CONNECTION_ERRORS = {
    "AdminShutdownError",
    "CannotConnectNowError",
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "InterfaceError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "TooManyConnectionsError",
}

#: Connections to a SQLite file: each is a thread, and SQLite runs one writer at a time;
#: more threads only contend with the event loop for the interpreter (bench/RESULTS.md).
SQLITE_POOL = 2
#: How long a caller waits for one of them before the store answers "unavailable" (503):
#: only another process holding the write lock keeps both busy that long.
SQLITE_POOL_WAIT_S = 15.0


def sqlite_url(path: Path) -> str:
    """Return the SQLAlchemy URL of a SQLite alert database file."""
    return f"sqlite+aiosqlite:///{path}"


def _is_transient(exc: BaseException, dialect: str) -> bool:
    """Tell whether exc means "try again later": the server went away, or SQLite was locked."""
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, OSError) or type(exc).__name__ in _CONNECTION_ERRORS:
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig: BaseException | None = exc.orig
    while orig is not None:
        if type(orig).__name__ in _CONNECTION_ERRORS or isinstance(orig, OSError):
            return True
        orig = orig.__cause__
    if dialect == "sqlite":
        # SQLite reports lock waits and every other failure (no such column, syntax error,
        # a broken file) as OperationalError; only the lock waits pass by themselves.
        message = str(exc.orig).lower()
        return isinstance(exc, OperationalError) and ("locked" in message or "busy" in message)
    return isinstance(exc, OperationalError | InterfaceError)


def new_key(client_key: str | None) -> str:
    """Return the client key a write is recorded under: the caller's, or a fresh one."""
    return client_key if client_key is not None else uuid.uuid4().hex


class Database:
    """The alert database through SQLAlchemy's async engine, shared by its repositories.

    Migrations run on first use. Every write is one transaction; a lost connection (server
    restart, failover) or a locked SQLite file is retried with backoff for up to
    `retry_for_s`. A retry can follow a COMMIT whose answer was lost, so every write is
    written to be replayed: alert events are keyed by alert id and (type, data time), and
    an event for an alert already cleared changes nothing; every row a case-work call
    inserts carries a client key (a fresh UUID per call, or the caller's `client_key`), and
    a replay finds the row instead of inserting another. Passing the same `client_key`
    again (a client resending a request) returns the first call's record.
    """

    def __init__(
        self,
        url: str,
        *,
        retry_for_s: float = 120.0,
        echo: bool = False,
        clock: Clock = wall_time,
    ) -> None:
        self.url = url
        #: The time every record is stamped with and every token's expiry is judged by.
        self.clock = clock
        # A server can drop pooled connections (restart, failover): ping before use. A
        # SQLite file cannot, and the ping would cost a thread hop per query.
        parsed = sa.engine.make_url(url)
        ping = parsed.get_backend_name() != "sqlite"
        on_file = not ping and parsed.database not in (None, "", ":memory:")
        pool: dict[str, Any] = (
            {"pool_size": SQLITE_POOL, "max_overflow": 0, "pool_timeout": SQLITE_POOL_WAIT_S}
            if on_file
            else {}
        )
        self._engine: AsyncEngine = create_async_engine(url, pool_pre_ping=ping, echo=echo, **pool)
        self._dialect = self._engine.dialect.name
        if self._dialect == "sqlite":
            sa_event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        self._retry_for_s = retry_for_s
        self._ready = False
        self._closed = False
        self._ready_lock = asyncio.Lock()
        #: Transactions retried after a lost connection.
        self.retries = 0

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (for migrations and tests)."""
        return self._engine

    async def open(self) -> None:
        """Bring the schema up to date; called by the first use if not before."""
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._retrying(None)
                self._ready = True

    @property
    def dialect(self) -> str:
        """The SQL dialect's name: sqlite or postgresql."""
        return self._dialect

    def insert(self, table: sa.Table) -> Any:
        """Return an INSERT of the dialect, which knows ON CONFLICT."""
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(table)

    async def _retrying(self, fn: Callable[[AsyncConnection], Awaitable[T]] | None) -> T:
        """Run fn in one transaction, retrying it while the server is unreachable."""
        delay = 0.1
        deadline = time.monotonic() + self._retry_for_s
        failing_since: float | None = None
        while True:
            try:
                if fn is None:
                    await upgrade(self._engine)
                    return None  # type: ignore[return-value]
                async with self._engine.begin() as conn:
                    result = await fn(conn)
            except sa.exc.TimeoutError as exc:
                # Every connection stayed busy for the pool's timeout: say so (HTTP 503)
                # rather than queue behind it for longer.
                raise StoreUnavailableError("alert database", f"no free connection: {exc}") from exc
            except Exception as exc:
                if not _is_transient(exc, self._dialect) or time.monotonic() > deadline:
                    raise
                self.retries += 1
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("alert database unreachable, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if failing_since is not None:
                log.info(
                    "alert database reachable again after %.1f s",
                    time.monotonic() - failing_since,
                )
            return result

    async def run(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run fn in one transaction (migrating first if need be), retried as above."""
        if self._closed:
            raise RuntimeError("the alert store is closed")
        await self.open()
        return await self._retrying(fn)

    async def fetch(self, query: sa.Select[Any]) -> list[sa.RowMapping]:
        """Return the rows a query selects, in a transaction of its own."""

        async def read(conn: AsyncConnection) -> list[sa.RowMapping]:
            return list((await conn.execute(query)).mappings().all())

        return await self.run(read)

    async def audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        alert_id: str | None,
        detail: dict[str, Any],
        client_key: str | None = None,
    ) -> None:
        """Write an audit entry in the caller's transaction (once per client key)."""
        stmt = self.insert(t.audit_log).values(
            at=self.clock(),
            actor=actor,
            action=action,
            alert_id=alert_id,
            detail=detail,
            client_key=client_key,
        )
        if client_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["client_key"])
        await conn.execute(stmt)

    async def insert_once(
        self, conn: AsyncConnection, table: sa.Table, key: str, values: dict[str, Any]
    ) -> tuple[sa.RowMapping, bool]:
        """Insert a row under a client key unless it is there; return it and if it is new."""
        done = await conn.execute(
            self.insert(table)
            .values(client_key=key, **values)
            .on_conflict_do_nothing(index_elements=["client_key"])
        )
        row = (
            (await conn.execute(sa.select(table).where(table.c.client_key == key))).mappings().one()
        )
        return row, bool(done.rowcount)

    async def close(self) -> None:
        """Release the connections; later calls raise RuntimeError."""
        self._closed = True
        await self._engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # First: switching to WAL takes a lock that another process may hold for a moment.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across process crashes in WAL mode; only power loss can lose
    # the last transactions.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
