"""SqlAlertStore: alerts, their history and the case work, on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from meterguard.errors import (
    AlertAlreadyClearedError,
    AlertNotFoundError,
    MeterguardError,
    StoreUnavailableError,
)
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.passwords import check_password, hash_password
from meterguard.roles import ROLE_NAMES
from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.migrate import upgrade
from meterguard.stores.alertdb.paging import order_by, sort_values, where_clauses
from meterguard.stores.records import (
    Acknowledgement,
    AlertListing,
    AlertQuery,
    AlertSort,
    Assignment,
    AuditEntry,
    Checklist,
    Comment,
    Outcome,
    User,
    WorkOrder,
    WorkOrderStatus,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

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

#: How long a valid token's user is remembered before the database is asked again.
TOKEN_CACHE_S = 5.0

#: What a user name may hold: ASCII, so that SQLite's and PostgreSQL's lower() agree and
#: names are unique whatever their case on both (migration 0006).
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


class UserExistsError(MeterguardError, ValueError):
    """A user of that name exists already, maybe in another case (`existing` is its name)."""

    def __init__(self, name: str, existing: str) -> None:
        self.name = name
        self.existing = existing
        same = "" if existing == name else " (names are unique whatever their case)"
        super().__init__(f"a user named {existing!r} exists{same}")


def same_name(column: sa.ColumnElement[str], name: str) -> sa.ColumnElement[bool]:
    """Match a user name whatever its case, as the unique index on lower(name) does."""
    if not name.isascii():
        # No user has such a name; and Python's lower() folds some letters to ASCII.
        return sa.false()
    return sa.func.lower(column) == name.lower()


#: Past this many remembered tokens the memory starts afresh.
TOKEN_CACHE_SIZE = 10_000


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


def _is_one_active_violation(exc: IntegrityError) -> bool:
    """Tell whether exc is the alerts_one_active index refusing a second active alert."""
    # PostgreSQL names the index; SQLite names the indexed columns.
    message = str(exc.orig)
    return "alerts_one_active" in message or "alerts.meter, alerts.kind" in message


def _new_key(client_key: str | None) -> str:
    return client_key if client_key is not None else uuid.uuid4().hex


#: A fetched row, or one the code completed itself.
_Row = sa.RowMapping | dict[str, Any]


def _alert_fields(row: _Row) -> dict[str, Any]:
    """Return the fields an Alert and an AlertListing share, from an alerts row."""
    return {
        "id": row["id"],
        "meter": row["meter"],
        "kind": AlertKind(row["kind"]),
        "severity": Severity(row["severity"]),
        "phase": row["phase"],
        "start": row["start"],
        "raised": row["raised"],
        "end": row["end_ts"],
        "confidence": row["confidence"],
        "estimated_kwh_lost": row["estimated_kwh_lost"],
        "summary": row["summary"],
    }


def _row_to_alert(row: _Row) -> Alert:
    return Alert(**_alert_fields(row), evidence=row["evidence"])


#: The columns a list shows: everything but the evidence, which can be large.
_LISTING_COLUMNS = [c for c in t.alerts.c if c.name != "evidence"]


def _listing(row: _Row) -> AlertListing:
    return AlertListing(
        **_alert_fields(row),
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"],
        assignee=row["assignee"],
    )


def _work_order(row: sa.RowMapping, alert_ids: list[str]) -> WorkOrder:
    data = dict(row)
    data.pop("client_key", None)
    data["status"] = WorkOrderStatus(data["status"])
    data["outcome"] = Outcome(data["outcome"]) if data["outcome"] else None
    data["checklist"] = Checklist.model_validate(data["checklist"] or {})
    # The first alert leads; the others follow in a stable order.
    data["alert_ids"] = [row["alert_id"], *sorted(set(alert_ids) - {row["alert_id"]})]
    return WorkOrder.model_validate(data)


async def _with_alerts(
    conn: AsyncConnection, rows: Sequence[sa.RowMapping]
) -> builtins.list[WorkOrder]:
    """Return the work orders of rows with the alerts each covers."""
    wa = t.work_order_alerts
    covered: dict[int, list[str]] = {}
    if rows:
        links = await conn.execute(
            sa.select(wa).where(wa.c.work_order_id.in_([r["id"] for r in rows]))
        )
        for link in links.mappings():
            covered.setdefault(link["work_order_id"], []).append(link["alert_id"])
    return [_work_order(r, covered.get(r["id"], [])) for r in rows]


def _user(row: _Row) -> User:
    data = dict(row)
    data["has_password"] = data.pop("password_hash", None) is not None
    return User.model_validate(data)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqlAlertStore:
    """The alert and case database through SQLAlchemy's async engine.

    Migrations run on first use. Every write is one transaction; a lost connection (server
    restart, failover) or a locked SQLite file is retried with backoff for up to
    `retry_for_s`. A retry can follow a COMMIT whose answer was lost, so every write is
    written to be replayed: alert events are keyed by alert id and (type, data time), and
    an event for an alert already cleared changes nothing; every row a case-work call
    inserts carries a client key (a fresh UUID per call, or the caller's `client_key`), and
    a replay finds the row instead of inserting another. Passing the same `client_key`
    again (a client resending a request) returns the first call's record.
    """

    def __init__(self, url: str, *, retry_for_s: float = 120.0, echo: bool = False) -> None:
        self.url = url
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
        #: Opens refused because the meter already had an active alert of that kind.
        self.duplicates_refused = 0
        #: Updates or clears of an alert the database does not hold.
        self.orphan_events = 0
        #: Events for an alert already cleared (late or replayed): ignored, never revive it.
        self.stale_events = 0
        #: Transactions retried after a lost connection.
        self.retries = 0
        #: Token digest -> its user and until when that answer holds (user_for_token).
        self._token_cache: dict[str, tuple[User, float]] = {}
        #: Bumped around every revocation; a lookup overlapping one does not cache.
        self._revocations = 0

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

    def _insert(self, table: sa.Table) -> Any:
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

    async def _run(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        if self._closed:
            raise RuntimeError("the alert store is closed")
        await self.open()
        return await self._retrying(fn)

    # --- alerts -----------------------------------------------------------------------

    async def apply(self, event: AlertEvent) -> bool:
        """Record an event; return False when it changed nothing (stale, orphan, duplicate).

        An open that would duplicate an active alert is refused, and an event for an alert
        that has ended (cleared by the engine or by hand) is stale.
        """
        alert = event.alert
        if event.type is AlertEventType.OPEN and alert.raised is None:
            # An open happens at the reading that raised the alert: its data time is `raised`.
            alert = alert.model_copy(update={"raised": event.ts})
        now = time.time()
        # `raised` is not among the values an update or a replayed open rewrites: the first
        # open wrote it for good.
        values = {
            "severity": alert.severity.value,
            "phase": alert.phase,
            "end_ts": alert.end,
            "confidence": alert.confidence,
            "estimated_kwh_lost": alert.estimated_kwh_lost,
            "summary": alert.summary,
            "evidence": alert.evidence,
            "active": alert.end is None,
            "updated_at": now,
        }

        a = t.alerts
        # Once an alert has an end it is history: a late or replayed open/update/clear (a
        # retry, a restart replaying its queue) must neither revive nor rewrite it.
        still_active = a.c.end_ts.is_(None)

        async def write(conn: AsyncConnection) -> Literal["applied", "stale", "orphan"]:
            if event.type is AlertEventType.OPEN:
                stmt = self._insert(a).values(
                    id=alert.id,
                    meter=alert.meter,
                    kind=alert.kind.value,
                    start=alert.start,
                    raised=alert.raised,
                    created_at=now,
                    **values,
                )
                done = await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["id"], set_=values, where=still_active
                    )
                )
            else:
                done = await conn.execute(
                    sa.update(a).where(a.c.id == alert.id, still_active).values(**values)
                )
            if done.rowcount == 0:
                held = await conn.execute(sa.select(a.c.id).where(a.c.id == alert.id))
                return "stale" if held.first() is not None else "orphan"
            recorded = await conn.execute(
                self._insert(t.alert_history)
                .values(
                    alert_id=alert.id,
                    type=event.type.value,
                    data_ts=event.ts,
                    recorded_at=now,
                    alert=alert.model_dump(mode="json"),
                )
                .on_conflict_do_nothing(index_elements=["alert_id", "type", "data_ts"])
            )
            if recorded.rowcount and event.type is not AlertEventType.UPDATE:
                await self._audit(conn, ENGINE_ACTOR, f"alert_{event.type.value}", alert.id, {})
            return "applied"

        try:
            outcome = await self._run(write)
        except IntegrityError as exc:
            if not _is_one_active_violation(exc):
                raise
            self.duplicates_refused += 1
            log.warning("refused a second active %s alert for meter %s", alert.kind, alert.meter)
            return False
        if outcome == "orphan":
            self.orphan_events += 1
            log.warning("%s for unknown alert %s ignored", event.type.value, alert.id)
        elif outcome == "stale":
            self.stale_events += 1
            log.info("%s for alert %s, already cleared, ignored", event.type.value, alert.id)
        return outcome == "applied"

    async def _row(self, alert_id: str) -> sa.RowMapping:
        rows = await self._fetch(sa.select(t.alerts).where(t.alerts.c.id == alert_id))
        if not rows:
            raise AlertNotFoundError(alert_id)
        return rows[0]

    async def get(self, alert_id: str) -> Alert:
        """Return one alert by id."""
        return _row_to_alert(await self._row(alert_id))

    async def detail(self, alert_id: str) -> tuple[Alert, AlertListing]:
        """Return one alert whole and with its case fields, from one read."""
        row = await self._row(alert_id)
        return _row_to_alert(row), _listing(row)

    async def history(self, alert_id: str) -> builtins.list[dict[str, Any]]:
        """Return the open/update/clear events recorded for an alert, oldest first."""
        h = t.alert_history
        query = (
            sa.select(h.c.type, h.c.data_ts, h.c.recorded_at)
            .where(h.c.alert_id == alert_id)
            .order_by(h.c.seq)
        )
        rows = await self._fetch(query)
        return [
            {"type": r["type"], "ts": r["data_ts"], "recorded_at": r["recorded_at"]} for r in rows
        ]

    async def list(
        self,
        *,
        active: bool | None = None,
        meter: str | None = None,
        kind: AlertKind | None = None,
        limit: int = 100,
        severity: Severity | None = None,
        acknowledged: bool | None = None,
        assignee: str | None = None,
        since: float | None = None,
        until: float | None = None,
        order: AlertSort = "start",
        offset: int = 0,
    ) -> builtins.list[Alert]:
        """Return whole alerts (with evidence) filtered as asked, newest or largest loss first.

        since/until select the alerts that held at some time between them.
        """
        query = AlertQuery(
            active=active,
            acknowledged=acknowledged,
            assignee=assignee,
            kinds=() if kind is None else (kind,),
            severities=() if severity is None else (severity,),
            meters=None if meter is None else (meter,),
            since=since,
            until=until,
            sort=order,
        )
        select = (
            sa.select(t.alerts)
            .where(*where_clauses(query))
            .order_by(*order_by(query))
            .limit(limit)
            .offset(offset)
        )
        return [_row_to_alert(r) for r in await self._fetch(select)]

    async def page(
        self, query: AlertQuery, limit: int
    ) -> tuple[builtins.list[AlertListing], tuple[Any, ...] | None]:
        """Return one page of a list and the sort key to continue after (None: last page)."""
        select = (
            sa.select(*_LISTING_COLUMNS)
            .where(*where_clauses(query))
            .order_by(*order_by(query))
            .limit(limit + 1)  # one more tells whether another page follows
        )
        rows = await self._fetch(select)
        more = len(rows) > limit
        rows = rows[:limit]
        listings = [_listing(r) for r in rows]
        return listings, sort_values(query.sort, rows[-1]) if more else None

    async def listing(self, alert_id: str) -> AlertListing:
        """Return one alert as a list shows it, with its case fields."""
        rows = await self._fetch(sa.select(*_LISTING_COLUMNS).where(t.alerts.c.id == alert_id))
        if not rows:
            raise AlertNotFoundError(alert_id)
        return _listing(rows[0])

    async def clear(
        self, alert_id: str, user: str, reason: str, *, client_key: str | None = None
    ) -> Alert:
        """Clear an active alert by hand, with the reason in its evidence and the audit trail.

        The alert ends at the last data time it was seen to hold. AlertAlreadyClearedError
        when it has ended already (unless this very call, by client key, ended it).
        """
        now = time.time()
        key = _new_key(client_key)
        a = t.alerts

        def current(conn: AsyncConnection) -> Awaitable[sa.CursorResult[Any]]:
            # FOR UPDATE holds the row on PostgreSQL; SQLite ignores it (see below).
            return conn.execute(sa.select(a).where(a.c.id == alert_id).with_for_update())

        async def write(conn: AsyncConnection) -> _Row:
            row = (await current(conn)).mappings().first()
            if row is None:
                raise AlertNotFoundError(alert_id)
            end = max(float(row["evidence"].get("last_hold_ts", row["start"])), row["start"])
            # The end first, only if the alert is still open: whoever ended it meanwhile
            # (the engine, another operator) wins, and this write takes the lock on SQLite.
            ended = await conn.execute(
                sa.update(a)
                .where(a.c.id == alert_id, a.c.end_ts.is_(None))
                .values(end_ts=end, active=False, updated_at=now)
            )
            if ended.rowcount == 0:
                # A retry after a lost COMMIT finds the audit row its first attempt wrote.
                mine = await conn.execute(
                    sa.select(t.audit_log.c.id).where(t.audit_log.c.client_key == key)
                )
                if mine.first() is not None:
                    return (await current(conn)).mappings().one()
                raise AlertAlreadyClearedError(alert_id)
            # Read again under the lock, so an engine update committed meanwhile is kept.
            cleared = dict((await current(conn)).mappings().one())
            evidence = {**cleared["evidence"]}
            evidence["cleared_by"] = {"manual": {"by": user, "reason": reason, "at": now}}
            await conn.execute(sa.update(a).where(a.c.id == alert_id).values(evidence=evidence))
            cleared["evidence"] = evidence
            await conn.execute(
                self._insert(t.alert_history)
                .values(
                    alert_id=alert_id,
                    type=AlertEventType.CLEAR.value,
                    data_ts=end,
                    recorded_at=now,
                    alert=_row_to_alert(cleared).model_dump(mode="json"),
                )
                .on_conflict_do_nothing(index_elements=["alert_id", "type", "data_ts"])
            )
            await self._audit(conn, user, "clear", alert_id, {"reason": reason}, key)
            return cleared

        return _row_to_alert(await self._run(write))

    async def _fetch(self, query: sa.Select[Any]) -> builtins.list[sa.RowMapping]:
        async def read(conn: AsyncConnection) -> builtins.list[sa.RowMapping]:
            return list((await conn.execute(query)).mappings().all())

        return await self._run(read)

    # --- case work --------------------------------------------------------------------

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        alert_id: str | None,
        detail: dict[str, Any],
        client_key: str | None = None,
    ) -> None:
        stmt = self._insert(t.audit_log).values(
            at=time.time(),
            actor=actor,
            action=action,
            alert_id=alert_id,
            detail=detail,
            client_key=client_key,
        )
        if client_key is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["client_key"])
        await conn.execute(stmt)

    async def _insert_once(
        self, conn: AsyncConnection, table: sa.Table, key: str, values: dict[str, Any]
    ) -> tuple[sa.RowMapping, bool]:
        """Insert a row under a client key unless it is there; return it and if it is new."""
        done = await conn.execute(
            self._insert(table)
            .values(client_key=key, **values)
            .on_conflict_do_nothing(index_elements=["client_key"])
        )
        row = (
            (await conn.execute(sa.select(table).where(table.c.client_key == key))).mappings().one()
        )
        return row, bool(done.rowcount)

    @staticmethod
    async def _require_alert(conn: AsyncConnection, alert_id: str) -> None:
        found = await conn.execute(sa.select(t.alerts.c.id).where(t.alerts.c.id == alert_id))
        if found.first() is None:
            raise AlertNotFoundError(alert_id)

    async def acknowledge(
        self, alert_id: str, user: str, note: str = "", *, client_key: str | None = None
    ) -> Acknowledgement:
        """Record that a user acknowledged an alert (once per client key)."""
        now = time.time()
        key = _new_key(client_key)

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            await self._require_alert(conn, alert_id)
            row, new = await self._insert_once(
                conn,
                t.acknowledgements,
                key,
                {"alert_id": alert_id, "user": user, "note": note, "at": now},
            )
            if new:
                await conn.execute(
                    sa.update(t.alerts)
                    .where(t.alerts.c.id == alert_id)
                    .values(acknowledged_by=user, acknowledged_at=now)
                )
                await self._audit(conn, user, "acknowledge", alert_id, {"note": note}, key)
            return row

        return Acknowledgement.model_validate(dict(await self._run(write)))

    async def assign(
        self, alert_id: str, assignee: str, assigned_by: str, *, client_key: str | None = None
    ) -> Assignment:
        """Hand an alert to someone (once per client key)."""
        now = time.time()
        key = _new_key(client_key)

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            await self._require_alert(conn, alert_id)
            values = {
                "alert_id": alert_id,
                "assignee": assignee,
                "assigned_by": assigned_by,
                "at": now,
            }
            row, new = await self._insert_once(conn, t.assignments, key, values)
            if new:
                await conn.execute(
                    sa.update(t.alerts).where(t.alerts.c.id == alert_id).values(assignee=assignee)
                )
                await self._audit(
                    conn, assigned_by, "assign", alert_id, {"assignee": assignee}, key
                )
            return row

        return Assignment.model_validate(dict(await self._run(write)))

    async def comment(
        self, alert_id: str, author: str, text: str, *, client_key: str | None = None
    ) -> Comment:
        """Add a comment to an alert (once per client key)."""
        now = time.time()
        key = _new_key(client_key)

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            await self._require_alert(conn, alert_id)
            values = {"alert_id": alert_id, "author": author, "text": text, "at": now}
            row, new = await self._insert_once(conn, t.comments, key, values)
            if new:
                await self._audit(conn, author, "comment", alert_id, {"text": text}, key)
            return row

        return Comment.model_validate(dict(await self._run(write)))

    async def comments(self, alert_id: str) -> builtins.list[Comment]:
        """Return an alert's comments, oldest first."""
        c = t.comments
        rows = await self._fetch(sa.select(c).where(c.c.alert_id == alert_id).order_by(c.c.id))
        return [Comment.model_validate(dict(r)) for r in rows]

    async def acknowledgements(self, alert_id: str) -> builtins.list[Acknowledgement]:
        """Return an alert's acknowledgements, oldest first."""
        k = t.acknowledgements
        rows = await self._fetch(sa.select(k).where(k.c.alert_id == alert_id).order_by(k.c.id))
        return [Acknowledgement.model_validate(dict(r)) for r in rows]

    async def assignments(self, alert_id: str) -> builtins.list[Assignment]:
        """Return an alert's assignments, oldest first."""
        s = t.assignments
        rows = await self._fetch(sa.select(s).where(s.c.alert_id == alert_id).order_by(s.c.id))
        return [Assignment.model_validate(dict(r)) for r in rows]

    async def create_work_order(
        self,
        alert_ids: str | Sequence[str],
        created_by: str,
        instructions: str,
        assignee: str | None = None,
        *,
        client_key: str | None = None,
    ) -> WorkOrder:
        """Open an investigation work order for one or several alerts (once per client key)."""
        ids = [alert_ids] if isinstance(alert_ids, str) else list(dict.fromkeys(alert_ids))
        if not ids:
            raise ValueError("a work order needs at least one alert")
        now = time.time()
        key = _new_key(client_key)

        async def write(conn: AsyncConnection) -> WorkOrder:
            for alert_id in ids:
                await self._require_alert(conn, alert_id)
            values = {
                "alert_id": ids[0],
                "created_by": created_by,
                "assignee": assignee,
                "instructions": instructions,
                "status": WorkOrderStatus.OPEN.value,
                "created_at": now,
                "updated_at": now,
                "outcome_note": "",
            }
            row, new = await self._insert_once(conn, t.work_orders, key, values)
            if new:
                await conn.execute(
                    sa.insert(t.work_order_alerts),
                    [{"work_order_id": row["id"], "alert_id": a} for a in ids],
                )
                detail = {"work_order": row["id"], "alerts": ids}
                await self._audit(conn, created_by, "work_order_create", ids[0], detail, key)
            return (await _with_alerts(conn, [row]))[0]

        return await self._run(write)

    async def update_work_order(
        self,
        work_order_id: int,
        by: str,
        *,
        status: WorkOrderStatus | None = None,
        assignee: str | None = None,
        outcome: Outcome | None = None,
        note: str = "",
        outcome_method: str | None = None,
        recovered_kwh: float | None = None,
        checklist: Checklist | None = None,
        client_key: str | None = None,
    ) -> WorkOrder:
        """Change a work order: move it along, reassign, record the checklist, or close it.

        An outcome closes the order (status done unless told otherwise). A change already
        made under the same client key (a replay) returns the work order as it stands.
        """
        if recovered_kwh is not None and not recovered_kwh >= 0:
            raise ValueError("recovered kWh must be a number >= 0")
        w, log_ = t.work_orders, t.audit_log
        key = _new_key(client_key)
        changes: dict[str, Any] = {"updated_at": time.time()}
        if assignee is not None:
            changes["assignee"] = assignee
        if outcome is not None:
            changes.update(
                outcome=outcome.value,
                outcome_note=note,
                outcome_method=outcome_method,
                closed_by=by,
            )
            status = status or WorkOrderStatus.DONE
        if status is not None:
            changes["status"] = status.value
        if recovered_kwh is not None:
            changes["recovered_kwh"] = recovered_kwh
        if checklist is not None:
            changes["checklist"] = checklist.model_dump(mode="json")

        async def write(conn: AsyncConnection) -> WorkOrder:
            seen = await conn.execute(sa.select(log_.c.id).where(log_.c.client_key == key))
            if seen.first() is None:
                result = await conn.execute(
                    sa.update(w).where(w.c.id == work_order_id).values(**changes).returning(*w.c)
                )
            else:
                result = await conn.execute(sa.select(w).where(w.c.id == work_order_id))
            row = result.mappings().first()
            if row is None:
                raise KeyError(f"no work order {work_order_id}")
            detail = {k: v for k, v in changes.items() if k != "updated_at"}
            detail["work_order"] = work_order_id
            await self._audit(conn, by, "work_order_update", row["alert_id"], detail, key)
            return (await _with_alerts(conn, [row]))[0]

        return await self._run(write)

    async def work_orders(
        self,
        *,
        alert_id: str | None = None,
        status: WorkOrderStatus | None = None,
        assignee: str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkOrder]:
        """Return work orders, newest first, filtered as asked (by any alert they cover)."""
        w, wa = t.work_orders, t.work_order_alerts
        query = sa.select(w)
        if alert_id is not None:
            covering = sa.select(wa.c.work_order_id).where(wa.c.alert_id == alert_id)
            query = query.where(w.c.id.in_(covering))
        if status is not None:
            query = query.where(w.c.status == status.value)
        if assignee is not None:
            query = query.where(w.c.assignee == assignee)
        query = query.order_by(w.c.id.desc()).limit(limit)

        async def read(conn: AsyncConnection) -> builtins.list[WorkOrder]:
            rows = list((await conn.execute(query)).mappings().all())
            return await _with_alerts(conn, rows)

        return await self._run(read)

    async def outcomes_by_kind(self) -> dict[str, dict[str, int]]:
        """Count recorded outcomes per alert kind: the detectors' false-alarm feedback.

        An order covering alerts of two kinds counts once for each kind.
        """
        w, wa, a = t.work_orders, t.work_order_alerts, t.alerts
        per_kind = (
            sa.select(a.c.kind, w.c.id, w.c.outcome)
            .distinct()
            .select_from(w.join(wa, wa.c.work_order_id == w.c.id).join(a, wa.c.alert_id == a.c.id))
            .where(w.c.outcome.is_not(None))
            .subquery()
        )
        query = sa.select(per_kind.c.kind, per_kind.c.outcome, sa.func.count().label("n")).group_by(
            per_kind.c.kind, per_kind.c.outcome
        )
        stats: dict[str, dict[str, int]] = {}
        for r in await self._fetch(query):
            stats.setdefault(r["kind"], {})[r["outcome"]] = int(r["n"])
        return stats

    async def alerts_by_kind(self) -> dict[str, int]:
        """Count the alerts each detector kind has raised (active or not)."""
        a = t.alerts
        query = sa.select(a.c.kind, sa.func.count().label("n")).group_by(a.c.kind)
        return {r["kind"]: int(r["n"]) for r in await self._fetch(query)}

    async def open_by_kind(self) -> dict[str, tuple[int, float]]:
        """Return per detector kind the active alerts and their summed estimated kWh lost."""
        a = t.alerts
        query = (
            sa.select(
                a.c.kind,
                sa.func.count().label("n"),
                sa.func.coalesce(sa.func.sum(a.c.estimated_kwh_lost), 0.0).label("kwh"),
            )
            .where(a.c.active.is_(True))
            .group_by(a.c.kind)
        )
        return {r["kind"]: (int(r["n"]), float(r["kwh"])) for r in await self._fetch(query)}

    async def audit(
        self, *, alert_id: str | None = None, limit: int = 100
    ) -> builtins.list[AuditEntry]:
        """Return audit entries, newest first."""
        log_ = t.audit_log
        query = sa.select(log_)
        if alert_id is not None:
            query = query.where(log_.c.alert_id == alert_id)
        rows = await self._fetch(query.order_by(log_.c.id.desc()).limit(limit))
        return [AuditEntry.model_validate(dict(r)) for r in rows]

    # --- users ------------------------------------------------------------------------

    async def create_user(
        self,
        name: str,
        role: str = "operator",
        *,
        created_by: str = "cli",
        password: str | None = None,
    ) -> tuple[User, str]:
        """Create a user and return it with a new API token (shown only this once).

        `created_by` is the actor the audit log records (the admin behind an API call).
        Raises ValueError for a role meterguard does not know or a name it does not take
        (1-100 of A-Z a-z 0-9 _ . @ -), UserExistsError for a name taken in any case.
        """
        if role not in ROLE_NAMES:
            raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLE_NAMES)}")
        if USER_NAME.fullmatch(name) is None:
            raise ValueError(
                f"user name {name!r}: use 1 to 100 of the letters A-Z, a-z, digits and _ . @ -"
            )
        token = secrets.token_urlsafe(32)
        token_hash = _hash_token(token)
        now = time.time()
        key = _new_key(None)
        password_hash = (
            None if password is None else await asyncio.to_thread(hash_password, password)
        )

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            values = {"name": name, "role": role, "created_at": now, "password_hash": password_hash}
            row, new = await self._insert_once(conn, t.users, key, values)
            if new:
                await conn.execute(
                    sa.insert(t.tokens).values(
                        user_id=row["id"], token_sha256=token_hash, created_at=now
                    )
                )
                detail = {"name": name, "role": role}
                await self._audit(conn, created_by, "user_create", None, detail, key)
            return row

        try:
            row = await self._run(write)
        except IntegrityError:
            # The database refused it (two creations racing included): name the holder.
            u = t.users
            taken = await self._fetch(sa.select(u.c.name).where(same_name(u.c.name, name)))
            if taken:
                raise UserExistsError(name, taken[0]["name"]) from None
            raise
        return _user(row), token

    async def set_password(self, name: str, password: str, *, by: str = "cli") -> None:
        """Give a user a (new) password; KeyError for an unknown user."""
        u = t.users
        password_hash = await asyncio.to_thread(hash_password, password)

        async def write(conn: AsyncConnection) -> None:
            result = await conn.execute(
                sa.update(u).where(same_name(u.c.name, name)).values(password_hash=password_hash)
            )
            if not result.rowcount:
                raise KeyError(f"no user {name!r}")
            await self._audit(conn, by, "password_set", None, {"name": name}, None)

        await self._run(write)

    async def login(self, name: str, password: str, ttl_s: float) -> tuple[User, str, float] | None:
        """Check a password; on success return the user, a new token and its expiry time.

        The name is matched whatever its case (names are unique that way): `Olga` logs in
        as `olga`, and the user returned carries the name as it was created.
        """
        u, k = t.users, t.tokens
        rows = await self._fetch(sa.select(u).where(same_name(u.c.name, name)))
        stored = rows[0]["password_hash"] if rows else None
        # Checked even for an unknown name, so timing does not tell which names exist.
        if not await asyncio.to_thread(check_password, password, stored) or not rows:
            return None
        token = secrets.token_urlsafe(32)
        now = time.time()
        expires_at = now + ttl_s

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                sa.insert(k).values(
                    user_id=rows[0]["id"],
                    token_sha256=_hash_token(token),
                    created_at=now,
                    expires_at=expires_at,
                )
            )

        await self._run(write)
        return _user(rows[0]), token, expires_at

    async def user_for_token(self, token: str) -> User | None:
        """Return the user a token belongs to, or None if unknown, revoked or expired.

        A valid token is remembered for TOKEN_CACHE_S (never past its expiry), as every
        request asks: a revocation in this process takes effect at once, one in another
        process sharing the database within that time.
        """
        digest = _hash_token(token)
        now = time.time()
        cached = self._token_cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        # A revocation that starts while this lookup reads must keep it from being cached.
        revocations = self._revocations
        u, k = t.users, t.tokens
        query = (
            sa.select(u, k.c.expires_at.label("token_expires_at"))
            .select_from(u.join(k, k.c.user_id == u.c.id))
            .where(
                k.c.token_sha256 == digest,
                k.c.revoked_at.is_(None),
                sa.or_(k.c.expires_at.is_(None), k.c.expires_at > now),
            )
        )
        rows = await self._fetch(query)
        if not rows:
            self._token_cache.pop(digest, None)
            return None
        data = dict(rows[0])
        expires_at = data.pop("token_expires_at")
        user = _user(data)
        if self._revocations != revocations:
            return user  # maybe revoked meanwhile: answer, but do not remember it
        if len(self._token_cache) >= TOKEN_CACHE_SIZE:
            self._token_cache.clear()
        until = now + TOKEN_CACHE_S
        self._token_cache[digest] = (user, until if expires_at is None else min(until, expires_at))
        return user

    async def revoke_token(self, token: str) -> bool:
        """Revoke a token; True if it was active."""
        k = t.tokens
        digest = _hash_token(token)
        self._revocations += 1
        self._token_cache.pop(digest, None)

        async def write(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                sa.update(k)
                .where(k.c.token_sha256 == digest, k.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            return bool(result.rowcount)

        try:
            return await self._run(write)
        finally:
            # A lookup that read the row before the commit may have cached it meanwhile.
            self._revocations += 1
            self._token_cache.pop(digest, None)

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
