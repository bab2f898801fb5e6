"""Migration 0008 and what it keeps: alert summaries as message keys, users' languages."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity, SummaryMessage
from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.alertdb.migrate import alembic_config, upgrade
from meterguard.stores.records import AlertQuery


def _alert(message: SummaryMessage | None) -> Alert:
    return Alert(
        id="A1",
        meter="M1",
        kind=AlertKind.BYPASS,
        severity=Severity.MAJOR,
        start=10.0,
        phase=2,
        confidence=0.5,
        summary="phase 2: neutral current shows up to 40% ...",
        summary_message=message,
    )


async def test_alerts_keep_their_summary_message_in_every_view(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    message = SummaryMessage(key="summary.bypass", params={"phase": 2, "magnitude": 0.4})
    try:
        await store.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=70, alert=_alert(None)))
        assert (await store.alerts.get("A1")).summary_message is None
        await store.alerts.apply(
            AlertEvent(type=AlertEventType.UPDATE, ts=130, alert=_alert(message))
        )
        assert (await store.alerts.get("A1")).summary_message == message
        assert (await store.alerts.listing("A1")).summary_message == message
        page, _ = await store.alerts.page(AlertQuery(), 10)
        assert [a.summary_message for a in page] == [message]
    finally:
        await store.close()


async def test_a_users_language_is_kept_and_a_remembered_token_sees_the_change(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        _, token = await store.users.create_user("olga", "operator")
        user = await store.users.user_for_token(token)  # now remembered for a few seconds
        assert user is not None
        assert user.language is None
        await store.users.set_language("OLGA", "zh-CN")  # names match in any case
        user = await store.users.user_for_token(token)
        assert user is not None
        assert user.language == "zh-CN"
    finally:
        await store.close()


async def test_upgrade_from_0006_leaves_old_rows_without_a_message_or_language(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await upgrade(store.engine, "0006")
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO alerts (id, meter, kind, severity, start, confidence,"
                    " estimated_kwh_lost, summary, evidence, active, created_at, updated_at)"
                    " VALUES ('A0', 'M1', 'reversal', 'major', 5, 1, 0, 's', '{}', :t, 0, 0)"
                ),
                {"t": True},
            )
            await conn.execute(
                sa.text("INSERT INTO users (name, role, created_at) VALUES ('ivan', 'crew', 0)")
            )
        await store.open()
        old = await store.alerts.get("A0")
        assert (old.summary, old.summary_message) == ("s", None)
        await store.users.set_language("ivan", "en")

        def down(conn: sa.Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")

        async with store.engine.begin() as conn:
            await conn.run_sync(down)
            columns = await conn.run_sync(
                lambda sync: {
                    table: {c["name"] for c in sa.inspect(sync).get_columns(table)}
                    for table in ("alerts", "users")
                }
            )
        assert "summary_message" not in columns["alerts"]
        assert "language" not in columns["users"]
    finally:
        await store.close()
