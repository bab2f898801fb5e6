"""Each repository as its callers see it (the protocols), on SQLite and PostgreSQL."""

import dataclasses

import pytest

from meterguard.errors import AlertAlreadyClearedError, AlertNotFoundError
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.records import AlertQuery, Outcome, WorkOrderStatus
from meterguard.stores.repositories import AlertRepository, CaseRepository, UserRepository


def _open(alert_id: str, meter: str, kind: AlertKind, start: float, kwh: float) -> AlertEvent:
    alert = Alert(
        id=alert_id,
        meter=meter,
        kind=kind,
        severity=Severity.MAJOR,
        start=start,
        confidence=0.9,
        estimated_kwh_lost=kwh,
        summary=f"{kind.value} on {meter}",
        evidence={"last_hold_ts": start + 60.0},
    )
    return AlertEvent(type=AlertEventType.OPEN, ts=start + 30.0, alert=alert)


async def test_the_alert_repository_keeps_lists_pages_and_counts_alerts(
    alert_db_url: str,
) -> None:
    db = AlertDatabase(alert_db_url)
    alerts: AlertRepository = db.alerts
    try:
        assert await alerts.apply(_open("A1", "M1", AlertKind.REVERSAL, 100.0, 2.0))
        assert await alerts.apply(_open("B1", "M2", AlertKind.BYPASS, 200.0, 9.0))
        assert await alerts.apply(_open("C1", "M3", AlertKind.BYPASS, 300.0, 4.0))
        # A second active alert of one meter and kind is refused, not raised.
        assert not await alerts.apply(_open("A2", "M1", AlertKind.REVERSAL, 400.0, 1.0))

        assert [a.id for a in await alerts.list()] == ["C1", "B1", "A1"]
        assert [a.id for a in await alerts.list(order="kwh")] == ["B1", "C1", "A1"]
        assert [a.id for a in await alerts.list(meter="M2")] == ["B1"]
        assert [a.id for a in await alerts.list(limit=1)] == ["C1"]

        query = AlertQuery(sort="start", direction="asc")
        first, after = await alerts.page(query, 2)
        assert [a.id for a in first] == ["A1", "B1"]
        assert after is not None
        rest, end = await alerts.page(dataclasses.replace(query, after=after), 2)
        assert ([a.id for a in rest], end) == (["C1"], None)

        whole, listed = await alerts.detail("B1")
        assert (whole.evidence, listed.assignee) == ({"last_hold_ts": 260.0}, None)
        assert (await alerts.listing("B1")).raised == 230.0
        with pytest.raises(AlertNotFoundError):
            await alerts.listing("nope")

        cleared = await alerts.clear("B1", "olga", "meter replaced")
        assert (cleared.end, cleared.active) == (260.0, False)
        with pytest.raises(AlertAlreadyClearedError):
            await alerts.clear("B1", "olga", "again")
        assert [h["type"] for h in await alerts.history("B1")] == ["open", "clear"]
        assert [a.id for a in await alerts.list(active=True)] == ["C1", "A1"]
        assert [a.id for a in await alerts.list(active=False)] == ["B1"]

        assert await alerts.alerts_by_kind() == {"bypass": 2, "reversal": 1}
        assert await alerts.open_by_kind() == {"bypass": (1, 4.0), "reversal": (1, 2.0)}
    finally:
        await db.close()


async def test_alerts_since_a_data_time_are_the_active_and_the_later_ended(
    alert_db_url: str,
) -> None:
    # What a partitioned worker reads when it takes a partition over.
    db = AlertDatabase(alert_db_url)
    try:
        for event in (
            _open("OLD", "M1", AlertKind.BYPASS, 100.0, 1.0),
            _open("LATE", "M2", AlertKind.BYPASS, 200.0, 1.0),
            _open("OPEN", "M3", AlertKind.REVERSAL, 300.0, 1.0),
        ):
            assert await db.alerts.apply(event)
        for alert_id, end in (("OLD", 150.0), ("LATE", 1_000.0)):
            stored = await db.alerts.get(alert_id)
            ended = stored.model_copy(update={"end": end})
            assert await db.alerts.apply(AlertEvent(type=AlertEventType.CLEAR, ts=end, alert=ended))
        assert sorted(a.id for a in await db.alerts.since(500.0)) == ["LATE", "OPEN"]
        assert sorted(a.id for a in await db.alerts.since(0.0)) == ["LATE", "OLD", "OPEN"]
        assert [a.id for a in await db.alerts.since(2_000.0)] == ["OPEN"]
    finally:
        await db.close()


async def test_the_case_repository_keeps_the_work_on_alerts(alert_db_url: str) -> None:
    db = AlertDatabase(alert_db_url)
    cases: CaseRepository = db.cases
    try:
        await db.alerts.apply(_open("A1", "M1", AlertKind.REVERSAL, 100.0, 2.0))
        await db.alerts.apply(_open("B1", "M2", AlertKind.BYPASS, 200.0, 9.0))

        ack = await cases.acknowledge("A1", "olga", "looking")
        handed = await cases.assign("A1", "crew-7", "olga")
        said = await cases.comment("A1", "crew-7", "on my way")
        assert [a.id for a in await cases.acknowledgements("A1")] == [ack.id]
        assert [a.id for a in await cases.assignments("A1")] == [handed.id]
        assert [c.id for c in await cases.comments("A1")] == [said.id]
        for write in (
            cases.acknowledge("nope", "olga"),
            cases.assign("nope", "crew-7", "olga"),
            cases.comment("nope", "olga", "x"),
            cases.create_work_order(["nope"], "olga", "visit"),
        ):
            with pytest.raises(AlertNotFoundError):
                await write
        # The alert repository sees the case fields the case repository wrote.
        listed = await db.alerts.listing("A1")
        assert (listed.acknowledged_by, listed.assignee) == ("olga", "crew-7")

        order = await cases.create_work_order(["A1", "B1"], "olga", "check both", "crew-7")
        assert (order.alert_ids, order.status) == (["A1", "B1"], WorkOrderStatus.OPEN)
        moving = await cases.update_work_order(order.id, "crew-7", status=WorkOrderStatus.ON_SITE)
        assert moving.status is WorkOrderStatus.ON_SITE
        done = await cases.update_work_order(order.id, "crew-7", outcome=Outcome.THEFT_CONFIRMED)
        assert (done.status, done.closed_by) == (WorkOrderStatus.DONE, "crew-7")
        with pytest.raises(KeyError):
            await cases.update_work_order(999, "olga", status=WorkOrderStatus.CANCELLED)

        assert [w.id for w in await cases.work_orders(alert_id="B1")] == [order.id]
        assert [w.id for w in await cases.work_orders(assignee="crew-7", limit=1)] == [order.id]
        assert await cases.work_orders(status=WorkOrderStatus.OPEN) == []
        assert await cases.outcomes_by_kind() == {
            "bypass": {"theft_confirmed": 1},
            "reversal": {"theft_confirmed": 1},
        }
        actions = [e.action for e in await cases.audit(alert_id="A1")]
        assert actions == [
            "work_order_update",
            "work_order_update",
            "work_order_create",
            "comment",
            "assign",
            "acknowledge",
            "alert_open",
        ]
    finally:
        await db.close()


async def test_the_user_repository_keeps_users_and_their_tokens(alert_db_url: str) -> None:
    db = AlertDatabase(alert_db_url)
    users: UserRepository = db.users
    try:
        olga, api_key = await users.create_user(
            "olga", "operator", created_by="admin", password="correct horse"
        )
        assert (olga.name, olga.role, olga.has_password) == ("olga", "operator", True)
        assert await users.user_for_token(api_key) == olga
        assert await users.login("olga", "wrong horse", 60.0) is None
        found = await users.login("OLGA", "correct horse", 60.0)
        assert found is not None
        user, session, _expires_at = found
        assert user == olga
        assert await users.user_for_token(session) == olga
        assert await users.revoke_token(session)
        assert not await users.revoke_token(session)
        assert await users.user_for_token(session) is None
        assert await users.user_for_token(api_key) == olga
        # Who created the user is in the audit trail the case repository reads.
        (entry,) = [e for e in await db.cases.audit() if e.action == "user_create"]
        assert (entry.actor, entry.detail) == ("admin", {"name": "olga", "role": "operator"})
    finally:
        await db.close()


async def test_the_repositories_share_one_database_and_close_together(
    alert_db_url: str,
) -> None:
    db = AlertDatabase(alert_db_url)
    await db.open()
    # What one repository writes the others see: one database under all three.
    assert await db.alerts.apply(_open("A1", "M1", AlertKind.REVERSAL, 100.0, 1.0))
    await db.users.create_user("olga", "operator")
    await db.cases.acknowledge("A1", "olga")
    assert (await db.alerts.listing("A1")).acknowledged_by == "olga"
    await db.close()
    for call in (
        db.alerts.list(),
        db.cases.work_orders(),
        db.users.user_for_token("any"),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            await call
