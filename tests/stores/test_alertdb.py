import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from meterguard.errors import AlertNotFoundError
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.stores.alertdb import SqlAlertStore
from meterguard.stores.alertdb.migrate import current_revision, head_revision
from meterguard.stores.records import Outcome, WorkOrderStatus


def _alert(**changes: object) -> Alert:
    base = dict(
        id="A1",
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=10.0,
        confidence=0.9,
        summary="s",
        evidence={"onset": {"p1": -100.0}},
    )
    base.update(changes)
    return Alert.model_validate(base)


def _open(**changes: object) -> AlertEvent:
    alert = _alert(**changes)
    return AlertEvent(type=AlertEventType.OPEN, ts=alert.start, alert=alert)


async def test_first_use_migrates_to_the_newest_revision(alert_db_url: str) -> None:
    store = SqlAlertStore(alert_db_url)
    try:
        assert await current_revision(store.engine) is None
        assert await store.list() == []
        assert await current_revision(store.engine) == head_revision()
    finally:
        await store.close()


async def test_alert_lifecycle_is_kept_with_history(alert_db_url: str) -> None:
    store = SqlAlertStore(alert_db_url)
    try:
        await store.apply(_open())
        update = AlertEvent(
            type=AlertEventType.UPDATE, ts=70, alert=_alert(estimated_kwh_lost=1.5, summary="s2")
        )
        await store.apply(update)
        await store.apply(update)  # a replayed event is recorded once
        assert [a.id for a in await store.list(active=True)] == ["A1"]
        assert (await store.get("A1")).summary == "s2"
        await store.apply(AlertEvent(type=AlertEventType.CLEAR, ts=400, alert=_alert(end=100.0)))
        got = await store.get("A1")
        assert got.end == 100.0
        assert got.estimated_kwh_lost == 0.0
        assert not got.active
        assert got.evidence == {"onset": {"p1": -100.0}}
        assert await store.list(active=True) == []
        assert [h["type"] for h in await store.history("A1")] == ["open", "update", "clear"]
        with pytest.raises(AlertNotFoundError):
            await store.get("nope")
        # A clear for an alert the database never saw is counted, not invented.
        await store.apply(AlertEvent(type=AlertEventType.CLEAR, ts=5, alert=_alert(id="X", end=1)))
        assert store.orphan_events == 1
        assert [a.id for a in await store.list()] == ["A1"]
        actions = [e.action for e in await store.audit(alert_id="A1")]
        assert actions == ["alert_clear", "alert_open"]
    finally:
        await store.close()


async def test_database_refuses_a_second_active_alert_per_meter_and_kind(
    alert_db_url: str,
) -> None:
    first, second = SqlAlertStore(alert_db_url), SqlAlertStore(alert_db_url)
    try:
        await first.apply(_open())
        await second.apply(_open(id="A2", start=20.0))
        assert second.duplicates_refused == 1
        assert [a.id for a in await first.list()] == ["A1"]
        # Another kind on the same meter, and the same kind once cleared, are fine.
        await second.apply(_open(id="B1", kind=AlertKind.TAMPER, start=20.0))
        await first.apply(AlertEvent(type=AlertEventType.CLEAR, ts=30, alert=_alert(end=15.0)))
        await second.apply(_open(id="A3", start=40.0))
        assert sorted(a.id for a in await first.list(active=True)) == ["A3", "B1"]
        assert [a.id for a in await first.list(kind=AlertKind.REVERSAL, active=False)] == ["A1"]
        # The index itself refuses it, whoever writes: a raw insert fails too.
        with pytest.raises(sa.exc.IntegrityError):
            async with first.engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO alerts (id, meter, kind, severity, start, confidence,"
                        " estimated_kwh_lost, summary, evidence, active, created_at, updated_at)"
                        " VALUES ('A4', 'M1', 'reversal', 'major', 50, 1, 0, 's', '{}', :t, 0, 0)"
                    ),
                    {"t": True},
                )
    finally:
        await first.close()
        await second.close()


async def test_two_processes_racing_to_open_leave_one_alert(alert_db_url: str) -> None:
    stores = [SqlAlertStore(alert_db_url) for _ in range(4)]
    try:
        await stores[0].open()
        await asyncio.gather(
            *(s.apply(_open(id=f"R{i}", start=float(i))) for i, s in enumerate(stores))
        )
        active = await stores[0].list(active=True)
        assert len(active) == 1
        assert sum(s.duplicates_refused for s in stores) == 3
    finally:
        for s in stores:
            await s.close()


async def test_case_work_is_recorded_and_audited(alert_db_url: str) -> None:
    store = SqlAlertStore(alert_db_url)
    try:
        await store.apply(_open(estimated_kwh_lost=2.0))
        await store.apply(_open(id="B", meter="M2", start=50.0, estimated_kwh_lost=9.0))
        ack = await store.acknowledge("A1", "olga", "looking")
        assert ack.user == "olga"
        await store.assign("A1", "crew-7", "olga")
        await store.comment("A1", "olga", "CT looks reversed")
        await store.comment("A1", "crew-7", "on my way")
        assert [c.text for c in await store.comments("A1")] == ["CT looks reversed", "on my way"]
        assert [a.assignee for a in await store.assignments("A1")] == ["crew-7"]
        assert [a.note for a in await store.acknowledgements("A1")] == ["looking"]
        assert [a.id for a in await store.list(acknowledged=True)] == ["A1"]
        assert [a.id for a in await store.list(acknowledged=False)] == ["B"]
        assert [a.id for a in await store.list(assignee="crew-7")] == ["A1"]
        assert [a.id for a in await store.list(order="kwh")] == ["B", "A1"]
        assert [a.id for a in await store.list()] == ["B", "A1"]
        assert [a.id for a in await store.list(since=20.0)] == ["B"]
        assert [a.id for a in await store.list(meter="M1", limit=1, offset=0)] == ["A1"]

        order = await store.create_work_order("A1", "olga", "check CT polarity", "crew-7")
        assert order.status is WorkOrderStatus.OPEN
        order = await store.update_work_order(order.id, "olga", status=WorkOrderStatus.DISPATCHED)
        assert order.status is WorkOrderStatus.DISPATCHED
        done = await store.update_work_order(
            order.id, "crew-7", outcome=Outcome.THEFT_CONFIRMED, note="bypass found"
        )
        assert done.status is WorkOrderStatus.DONE
        assert done.outcome is Outcome.THEFT_CONFIRMED
        assert done.closed_by == "crew-7"
        assert [w.id for w in await store.work_orders(status=WorkOrderStatus.DONE)] == [order.id]
        assert await store.work_orders(status=WorkOrderStatus.OPEN) == []
        assert await store.outcomes_by_kind() == {"reversal": {"theft_confirmed": 1}}
        actions = [e.action for e in await store.audit(alert_id="A1")]
        assert actions == [
            "work_order_update",
            "work_order_update",
            "work_order_create",
            "comment",
            "comment",
            "assign",
            "acknowledge",
            "alert_open",
        ]
        with pytest.raises(AlertNotFoundError):
            await store.comment("nope", "olga", "x")
        with pytest.raises(KeyError):
            await store.update_work_order(999, "olga", status=WorkOrderStatus.CANCELLED)
    finally:
        await store.close()


async def test_tokens_are_kept_as_hashes_and_can_be_revoked(alert_db_url: str) -> None:
    store = SqlAlertStore(alert_db_url)
    try:
        user, token = await store.create_user("olga", "supervisor")
        found = await store.user_for_token(token)
        assert found is not None
        assert (found.name, found.role, found.id) == ("olga", "supervisor", user.id)
        assert await store.user_for_token(token + "x") is None
        async with store.engine.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT token_sha256 FROM tokens"))).scalar_one()
        assert token not in stored
        assert await store.revoke_token(token)
        assert await store.user_for_token(token) is None
        with pytest.raises(sa.exc.IntegrityError):
            await store.create_user("olga")
    finally:
        await store.close()


async def test_sqlite_default_file_is_created_with_its_folder(tmp_path: Path) -> None:
    from meterguard.stores.alertdb import sqlite_url

    path = tmp_path / "sub" / "alerts.sqlite"
    path.parent.mkdir()
    store = SqlAlertStore(sqlite_url(path))
    try:
        await store.apply(_open())
    finally:
        await store.close()
    again = SqlAlertStore(sqlite_url(path))
    try:
        assert [a.id for a in await again.list(active=True)] == ["A1"]
    finally:
        await again.close()
