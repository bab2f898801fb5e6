"""The alert repository: alert events, active alerts, lists and pages, and per-kind counts."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Awaitable
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from meterguard.errors import AlertAlreadyClearedError, AlertNotFoundError
from meterguard.model import (
    Alert,
    AlertEvent,
    AlertEventType,
    AlertKind,
    Severity,
    SummaryMessage,
)
from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.core import ENGINE_ACTOR, Database, Row, new_key
from meterguard.stores.alertdb.paging import order_by, sort_values, where_clauses
from meterguard.stores.records import AlertListing, AlertQuery, AlertSort

log = logging.getLogger(__name__)


def _is_one_active_violation(exc: IntegrityError) -> bool:
    """Tell whether exc is the alerts_one_active index refusing a second active alert."""
    # PostgreSQL names the index; SQLite names the indexed columns.
    message = str(exc.orig)
    return "alerts_one_active" in message or "alerts.meter, alerts.kind" in message


def _alert_fields(row: Row) -> dict[str, Any]:
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
        "summary_message": _message(row["summary_message"]),
    }


def _message(stored: dict[str, Any] | None) -> SummaryMessage | None:
    return None if stored is None else SummaryMessage.model_validate(stored)


def _row_to_alert(row: Row) -> Alert:
    return Alert(**_alert_fields(row), evidence=row["evidence"])


#: The columns a list shows: everything but the evidence, which can be large.
_LISTING_COLUMNS = [c for c in t.alerts.c if c.name != "evidence"]


def _listing(row: Row) -> AlertListing:
    return AlertListing(
        **_alert_fields(row),
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"],
        assignee=row["assignee"],
    )


class SqlAlertRepository:
    """Alerts and their history in the alert database: what the engine and operators end."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: Opens refused because the meter already had an active alert of that kind.
        self.duplicates_refused = 0
        #: Updates or clears of an alert the database does not hold.
        self.orphan_events = 0
        #: Events for an alert already cleared (late or replayed): ignored, never revive it.
        self.stale_events = 0

    async def apply(self, event: AlertEvent) -> bool:
        """Record an event; return False when it changed nothing (stale, orphan, duplicate).

        An open that would duplicate an active alert is refused, and an event for an alert
        that has ended (cleared by the engine or by hand) is stale.
        """
        alert = event.alert
        if event.type is AlertEventType.OPEN and alert.raised is None:
            # An open happens at the reading that raised the alert: its data time is `raised`.
            alert = alert.model_copy(update={"raised": event.ts})
        now = self._db.clock()
        # `raised` is not among the values an update or a replayed open rewrites: the first
        # open wrote it for good.
        values = {
            "severity": alert.severity.value,
            "phase": alert.phase,
            "end_ts": alert.end,
            "confidence": alert.confidence,
            "estimated_kwh_lost": alert.estimated_kwh_lost,
            "summary": alert.summary,
            "summary_message": (
                None if alert.summary_message is None else alert.summary_message.model_dump()
            ),
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
                stmt = self._db.insert(a).values(
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
                self._db.insert(t.alert_history)
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
                await self._db.audit(conn, ENGINE_ACTOR, f"alert_{event.type.value}", alert.id, {})
            return "applied"

        try:
            outcome = await self._db.run(write)
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
        rows = await self._db.fetch(sa.select(t.alerts).where(t.alerts.c.id == alert_id))
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
        rows = await self._db.fetch(query)
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
        return [_row_to_alert(r) for r in await self._db.fetch(select)]

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
        rows = await self._db.fetch(select)
        more = len(rows) > limit
        rows = rows[:limit]
        listings = [_listing(r) for r in rows]
        return listings, sort_values(query.sort, rows[-1]) if more else None

    async def listing(self, alert_id: str) -> AlertListing:
        """Return one alert as a list shows it, with its case fields."""
        rows = await self._db.fetch(sa.select(*_LISTING_COLUMNS).where(t.alerts.c.id == alert_id))
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
        now = self._db.clock()
        key = new_key(client_key)
        a = t.alerts

        def current(conn: AsyncConnection) -> Awaitable[sa.CursorResult[Any]]:
            # FOR UPDATE holds the row on PostgreSQL; SQLite ignores it (see below).
            return conn.execute(sa.select(a).where(a.c.id == alert_id).with_for_update())

        async def write(conn: AsyncConnection) -> Row:
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
                self._db.insert(t.alert_history)
                .values(
                    alert_id=alert_id,
                    type=AlertEventType.CLEAR.value,
                    data_ts=end,
                    recorded_at=now,
                    alert=_row_to_alert(cleared).model_dump(mode="json"),
                )
                .on_conflict_do_nothing(index_elements=["alert_id", "type", "data_ts"])
            )
            await self._db.audit(conn, user, "clear", alert_id, {"reason": reason}, key)
            return cleared

        return _row_to_alert(await self._db.run(write))

    async def alerts_by_kind(self) -> dict[str, int]:
        """Count the alerts each detector kind has raised (active or not)."""
        a = t.alerts
        query = sa.select(a.c.kind, sa.func.count().label("n")).group_by(a.c.kind)
        return {r["kind"]: int(r["n"]) for r in await self._db.fetch(query)}

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
        return {r["kind"]: (int(r["n"]), float(r["kwh"])) for r in await self._db.fetch(query)}

    async def since(self, data_ts: float) -> builtins.list[Alert]:
        """Return every alert active now or ended at or after data time `data_ts`.

        A partitioned worker that takes a partition over reads these once: what the
        previous owner stored, so that replaying the partition repeats none of it.
        """
        a = t.alerts
        query = sa.select(a).where(a.c.active.is_(True) | (a.c.end_ts >= data_ts))
        return [_row_to_alert(r) for r in await self._db.fetch(query)]
