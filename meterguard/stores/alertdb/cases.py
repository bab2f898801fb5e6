"""The case repository: acknowledgements, assignments, comments, work orders and the audit trail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from meterguard.errors import AlertNotFoundError
from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.core import Database, new_key
from meterguard.stores.records import (
    Acknowledgement,
    Assignment,
    AuditEntry,
    Checklist,
    Comment,
    Outcome,
    WorkOrder,
    WorkOrderStatus,
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


async def _with_alerts(conn: AsyncConnection, rows: Sequence[sa.RowMapping]) -> list[WorkOrder]:
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


async def _require_alert(conn: AsyncConnection, alert_id: str) -> None:
    found = await conn.execute(sa.select(t.alerts.c.id).where(t.alerts.c.id == alert_id))
    if found.first() is None:
        raise AlertNotFoundError(alert_id)


class SqlCaseRepository:
    """What the control room and the crews did about alerts, in the alert database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acknowledge(
        self, alert_id: str, user: str, note: str = "", *, client_key: str | None = None
    ) -> Acknowledgement:
        """Record that a user acknowledged an alert (once per client key)."""
        now = self._db.clock()
        key = new_key(client_key)

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            await _require_alert(conn, alert_id)
            row, new = await self._db.insert_once(
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
                await self._db.audit(conn, user, "acknowledge", alert_id, {"note": note}, key)
            return row

        return Acknowledgement.model_validate(dict(await self._db.run(write)))

    async def assign(
        self, alert_id: str, assignee: str, assigned_by: str, *, client_key: str | None = None
    ) -> Assignment:
        """Hand an alert to someone (once per client key)."""
        now = self._db.clock()
        key = new_key(client_key)

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            await _require_alert(conn, alert_id)
            values = {
                "alert_id": alert_id,
                "assignee": assignee,
                "assigned_by": assigned_by,
                "at": now,
            }
            row, new = await self._db.insert_once(conn, t.assignments, key, values)
            if new:
                await conn.execute(
                    sa.update(t.alerts).where(t.alerts.c.id == alert_id).values(assignee=assignee)
                )
                await self._db.audit(
                    conn, assigned_by, "assign", alert_id, {"assignee": assignee}, key
                )
            return row

        return Assignment.model_validate(dict(await self._db.run(write)))

    async def comment(
        self, alert_id: str, author: str, text: str, *, client_key: str | None = None
    ) -> Comment:
        """Add a comment to an alert (once per client key)."""
        now = self._db.clock()
        key = new_key(client_key)

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            await _require_alert(conn, alert_id)
            values = {"alert_id": alert_id, "author": author, "text": text, "at": now}
            row, new = await self._db.insert_once(conn, t.comments, key, values)
            if new:
                await self._db.audit(conn, author, "comment", alert_id, {"text": text}, key)
            return row

        return Comment.model_validate(dict(await self._db.run(write)))

    async def record(self, alert_id: str, actor: str, action: str, detail: dict[str, Any]) -> None:
        """Write what someone did with a case that changes no record (an export) to the audit."""

        async def write(conn: AsyncConnection) -> None:
            await _require_alert(conn, alert_id)
            await self._db.audit(conn, actor, action, alert_id, detail)

        await self._db.run(write)

    async def comments(self, alert_id: str) -> list[Comment]:
        """Return an alert's comments, oldest first."""
        c = t.comments
        rows = await self._db.fetch(sa.select(c).where(c.c.alert_id == alert_id).order_by(c.c.id))
        return [Comment.model_validate(dict(r)) for r in rows]

    async def acknowledgements(self, alert_id: str) -> list[Acknowledgement]:
        """Return an alert's acknowledgements, oldest first."""
        k = t.acknowledgements
        rows = await self._db.fetch(sa.select(k).where(k.c.alert_id == alert_id).order_by(k.c.id))
        return [Acknowledgement.model_validate(dict(r)) for r in rows]

    async def assignments(self, alert_id: str) -> list[Assignment]:
        """Return an alert's assignments, oldest first."""
        s = t.assignments
        rows = await self._db.fetch(sa.select(s).where(s.c.alert_id == alert_id).order_by(s.c.id))
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
        now = self._db.clock()
        key = new_key(client_key)

        async def write(conn: AsyncConnection) -> WorkOrder:
            for alert_id in ids:
                await _require_alert(conn, alert_id)
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
            row, new = await self._db.insert_once(conn, t.work_orders, key, values)
            if new:
                await conn.execute(
                    sa.insert(t.work_order_alerts),
                    [{"work_order_id": row["id"], "alert_id": a} for a in ids],
                )
                detail = {"work_order": row["id"], "alerts": ids}
                await self._db.audit(conn, created_by, "work_order_create", ids[0], detail, key)
            return (await _with_alerts(conn, [row]))[0]

        return await self._db.run(write)

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
        key = new_key(client_key)
        changes: dict[str, Any] = {"updated_at": self._db.clock()}
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
            await self._db.audit(conn, by, "work_order_update", row["alert_id"], detail, key)
            return (await _with_alerts(conn, [row]))[0]

        return await self._db.run(write)

    async def work_orders(
        self,
        *,
        alert_id: str | None = None,
        status: WorkOrderStatus | None = None,
        assignee: str | None = None,
        limit: int = 100,
    ) -> list[WorkOrder]:
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

        async def read(conn: AsyncConnection) -> list[WorkOrder]:
            rows = list((await conn.execute(query)).mappings().all())
            return await _with_alerts(conn, rows)

        return await self._db.run(read)

    async def work_order(self, work_order_id: int) -> WorkOrder | None:
        """Return one work order with the alerts it covers (None if there is none)."""
        query = sa.select(t.work_orders).where(t.work_orders.c.id == work_order_id)

        async def read(conn: AsyncConnection) -> list[WorkOrder]:
            return await _with_alerts(conn, list((await conn.execute(query)).mappings().all()))

        found = await self._db.run(read)
        return found[0] if found else None

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
        for r in await self._db.fetch(query):
            stats.setdefault(r["kind"], {})[r["outcome"]] = int(r["n"])
        return stats

    async def audit(self, *, alert_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Return audit entries, newest first."""
        log_ = t.audit_log
        query = sa.select(log_)
        if alert_id is not None:
            query = query.where(log_.c.alert_id == alert_id)
        rows = await self._db.fetch(query.order_by(log_.c.id.desc()).limit(limit))
        return [AuditEntry.model_validate(dict(r)) for r in rows]

    # --- users ------------------------------------------------------------------------
