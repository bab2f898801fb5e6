"""The alert database on SQLite and PostgreSQL: lifecycle, uniqueness, replays, migrations."""

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from meterguard.errors import AlertAlreadyClearedError, AlertNotFoundError, StoreUnavailableError
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.stores.alertdb import AlertDatabase, UserExistsError, sqlite_url
from meterguard.stores.alertdb import core as core_module
from meterguard.stores.alertdb import users as users_module
from meterguard.stores.alertdb.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from meterguard.stores.records import (
    AlertQuery,
    AlertSort,
    CheckAnswer,
    Checklist,
    Outcome,
    WorkOrderStatus,
)
from tests.clock import ManualClock


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


async def _insert_active_alert(conn: AsyncConnection, alert_id: str, start: int) -> None:
    """Insert an active reversal alert of M1 by hand, as any writer could, bypassing the store."""
    await conn.execute(
        sa.text(
            "INSERT INTO alerts (id, meter, kind, severity, start, confidence,"
            " estimated_kwh_lost, summary, evidence, active, created_at, updated_at)"
            " VALUES (:id, 'M1', 'reversal', 'major', :start, 1, 0, 's', '{}', :t, 0, 0)"
        ),
        {"id": alert_id, "start": start, "t": True},
    )


async def _downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the schema down to a revision, as Alembic's downgrade does."""

    def run(conn: sa.Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def test_first_use_migrates_to_the_newest_revision(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        assert await current_revision(store.engine) is None
        assert await store.alerts.list() == []
        assert await current_revision(store.engine) == head_revision()
    finally:
        await store.close()


async def test_alert_lifecycle_is_kept_with_history(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(_open())
        update = AlertEvent(
            type=AlertEventType.UPDATE, ts=70, alert=_alert(estimated_kwh_lost=1.5, summary="s2")
        )
        await store.alerts.apply(update)
        await store.alerts.apply(update)  # a replayed event is recorded once
        assert [a.id for a in await store.alerts.list(active=True)] == ["A1"]
        assert (await store.alerts.get("A1")).summary == "s2"
        await store.alerts.apply(
            AlertEvent(type=AlertEventType.CLEAR, ts=400, alert=_alert(end=100.0))
        )
        got = await store.alerts.get("A1")
        assert got.end == 100.0
        assert got.estimated_kwh_lost == 0.0
        assert not got.active
        assert got.evidence == {"onset": {"p1": -100.0}}
        assert await store.alerts.list(active=True) == []
        assert [h["type"] for h in await store.alerts.history("A1")] == ["open", "update", "clear"]
        with pytest.raises(AlertNotFoundError):
            await store.alerts.get("nope")
        # A clear for an alert the database never saw is counted, not invented.
        await store.alerts.apply(
            AlertEvent(type=AlertEventType.CLEAR, ts=5, alert=_alert(id="X", end=1))
        )
        assert store.alerts.orphan_events == 1
        assert [a.id for a in await store.alerts.list()] == ["A1"]
        actions = [e.action for e in await store.cases.audit(alert_id="A1")]
        assert actions == ["alert_clear", "alert_open"]
    finally:
        await store.close()


async def test_database_refuses_a_second_active_alert_per_meter_and_kind(
    alert_db_url: str,
) -> None:
    first, second = AlertDatabase(alert_db_url), AlertDatabase(alert_db_url)
    try:
        await first.alerts.apply(_open())
        await second.alerts.apply(_open(id="A2", start=20.0))
        assert second.alerts.duplicates_refused == 1
        assert [a.id for a in await first.alerts.list()] == ["A1"]
        # Another kind on the same meter, and the same kind once cleared, are fine.
        await second.alerts.apply(_open(id="B1", kind=AlertKind.TAMPER, start=20.0))
        await first.alerts.apply(
            AlertEvent(type=AlertEventType.CLEAR, ts=30, alert=_alert(end=15.0))
        )
        await second.alerts.apply(_open(id="A3", start=40.0))
        assert sorted(a.id for a in await first.alerts.list(active=True)) == ["A3", "B1"]
        assert [a.id for a in await first.alerts.list(kind=AlertKind.REVERSAL, active=False)] == [
            "A1"
        ]
        # The index itself refuses it, whoever writes: a raw insert fails too.
        with pytest.raises(sa.exc.IntegrityError):
            async with first.engine.begin() as conn:
                await _insert_active_alert(conn, "A4", 50)
    finally:
        await first.close()
        await second.close()


def test_processes_racing_on_a_fresh_database_leave_one_alert(alert_db_url: str) -> None:
    # Four processes start together on a database nobody migrated yet, with no retries
    # allowed: the upgrade itself must take turns, and the index must refuse three opens.
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.stores.alert_race_proc",
                alert_db_url,
                f"R{i}",
                str(start_at),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sum(r["refused"] for r in reports) == 3
    assert [r["retries"] for r in reports] == [0, 0, 0, 0]

    async def check() -> None:
        store = AlertDatabase(alert_db_url)
        try:
            assert len(await store.alerts.list(active=True)) == 1
            assert await current_revision(store.engine) == head_revision()
        finally:
            await store.close()

    asyncio.run(check())


def test_sqlite_migration_killed_midway_leaves_no_half_schema(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    url = sqlite_url(path)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.stores.migration_crash_proc", url],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == 9, crashed.stderr
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alerts" not in tables  # the tables created before the crash were rolled back

    async def check() -> None:
        store = AlertDatabase(url, retry_for_s=0.0)
        try:
            await store.alerts.apply(_open())
            assert [a.id for a in await store.alerts.list()] == ["A1"]
            assert await current_revision(store.engine) == head_revision()
        finally:
            await store.close()

    asyncio.run(check())


async def test_sqlite_errors_other_than_locks_raise_at_once(tmp_path: Path) -> None:
    store = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"), retry_for_s=30.0)
    try:
        await store.open()
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="no such column"):
            await store.core.run(lambda c: c.execute(sa.text("SELECT nonexistent FROM alerts")))
        with pytest.raises(sa.exc.OperationalError, match="syntax error"):
            await store.core.run(lambda c: c.execute(sa.text("SELEC 1")))
        assert store.core.retries == 0
        assert time.monotonic() - started < 5.0
    finally:
        await store.close()


async def test_late_open_or_update_never_revives_a_cleared_alert(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(_open())
        await store.alerts.apply(
            AlertEvent(type=AlertEventType.CLEAR, ts=400, alert=_alert(end=100.0))
        )
        # A replayed OPEN and a late UPDATE arrive after the clear.
        await store.alerts.apply(_open(summary="replayed"))
        late = _alert(estimated_kwh_lost=7.0, summary="late")
        await store.alerts.apply(AlertEvent(type=AlertEventType.UPDATE, ts=90, alert=late))
        await store.alerts.apply(
            AlertEvent(type=AlertEventType.CLEAR, ts=500, alert=_alert(end=200.0))
        )
        got = await store.alerts.get("A1")
        assert got.end == 100.0
        assert not got.active
        assert got.summary == "s"
        assert got.estimated_kwh_lost == 0.0
        assert await store.alerts.list(active=True) == []
        assert store.alerts.stale_events == 3
        assert store.alerts.orphan_events == 0
        assert [h["type"] for h in await store.alerts.history("A1")] == ["open", "clear"]
        # The meter can still get a new alert of that kind.
        await store.alerts.apply(_open(id="A2", start=300.0))
        assert [a.id for a in await store.alerts.list(active=True)] == ["A2"]
        assert store.alerts.duplicates_refused == 0
    finally:
        await store.close()


async def test_only_the_one_active_index_counts_as_a_refused_duplicate(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.open()
        # Another unique rule (not the one-active index) that an open can break.
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("CREATE UNIQUE INDEX test_one_summary ON alerts (summary)"))
        await store.alerts.apply(_open())
        with pytest.raises(sa.exc.IntegrityError):
            await store.alerts.apply(_open(id="B1", meter="M2"))
        assert store.alerts.duplicates_refused == 0
        await store.alerts.apply(_open(id="A2", summary="other"))
        assert store.alerts.duplicates_refused == 1
    finally:
        await store.close()


async def test_case_work_is_recorded_and_audited(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(_open(estimated_kwh_lost=2.0))
        await store.alerts.apply(_open(id="B", meter="M2", start=50.0, estimated_kwh_lost=9.0))
        ack = await store.cases.acknowledge("A1", "olga", "looking")
        assert ack.user == "olga"
        await store.cases.assign("A1", "crew-7", "olga")
        await store.cases.comment("A1", "olga", "CT looks reversed")
        await store.cases.comment("A1", "crew-7", "on my way")
        assert [c.text for c in await store.cases.comments("A1")] == [
            "CT looks reversed",
            "on my way",
        ]
        assert [a.assignee for a in await store.cases.assignments("A1")] == ["crew-7"]
        assert [a.note for a in await store.cases.acknowledgements("A1")] == ["looking"]
        assert [a.id for a in await store.alerts.list(acknowledged=True)] == ["A1"]
        assert [a.id for a in await store.alerts.list(acknowledged=False)] == ["B"]
        assert [a.id for a in await store.alerts.list(assignee="crew-7")] == ["A1"]
        assert [a.id for a in await store.alerts.list(order="kwh")] == ["B", "A1"]
        assert [a.id for a in await store.alerts.list()] == ["B", "A1"]
        # A time range selects the alerts that held within it: both are still open.
        assert [a.id for a in await store.alerts.list(since=20.0)] == ["B", "A1"]
        assert [a.id for a in await store.alerts.list(until=20.0)] == ["A1"]
        assert [a.id for a in await store.alerts.list(meter="M1", limit=1, offset=0)] == ["A1"]

        order = await store.cases.create_work_order("A1", "olga", "check CT polarity", "crew-7")
        assert order.status is WorkOrderStatus.OPEN
        order = await store.cases.update_work_order(
            order.id, "olga", status=WorkOrderStatus.EN_ROUTE
        )
        assert order.status is WorkOrderStatus.EN_ROUTE
        done = await store.cases.update_work_order(
            order.id, "crew-7", outcome=Outcome.THEFT_CONFIRMED, note="bypass found"
        )
        assert done.status is WorkOrderStatus.DONE
        assert done.outcome is Outcome.THEFT_CONFIRMED
        assert done.closed_by == "crew-7"
        assert [w.id for w in await store.cases.work_orders(status=WorkOrderStatus.DONE)] == [
            order.id
        ]
        assert await store.cases.work_orders(status=WorkOrderStatus.OPEN) == []
        assert await store.cases.outcomes_by_kind() == {"reversal": {"theft_confirmed": 1}}
        actions = [e.action for e in await store.cases.audit(alert_id="A1")]
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
            await store.cases.comment("nope", "olga", "x")
        with pytest.raises(KeyError):
            await store.cases.update_work_order(999, "olga", status=WorkOrderStatus.CANCELLED)
    finally:
        await store.close()


async def test_tokens_are_kept_as_hashes_and_can_be_revoked(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        user, token = await store.users.create_user("olga", "admin")
        found = await store.users.user_for_token(token)
        assert found is not None
        assert (found.name, found.role, found.id) == ("olga", "admin", user.id)
        assert await store.users.user_for_token(token + "x") is None
        async with store.engine.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT token_sha256 FROM tokens"))).scalar_one()
        assert token not in stored
        assert await store.users.revoke_token(token)
        assert await store.users.user_for_token(token) is None
        with pytest.raises(UserExistsError):
            await store.users.create_user("olga")
    finally:
        await store.close()


async def test_sqlite_default_file_is_created_with_its_folder(tmp_path: Path) -> None:
    from meterguard.stores.alertdb import sqlite_url

    path = tmp_path / "sub" / "alerts.sqlite"
    path.parent.mkdir()
    store = AlertDatabase(sqlite_url(path))
    try:
        await store.alerts.apply(_open())
    finally:
        await store.close()
    again = AlertDatabase(sqlite_url(path))
    try:
        assert [a.id for a in await again.alerts.list(active=True)] == ["A1"]
    finally:
        await again.close()


class LosingCommitAnswers:
    """Makes the engine's next `lose` transactions commit, then report a lost connection.

    Stands in for a server that went away between committing and answering: the store
    must retry (it cannot know the COMMIT took) without doubling anything.
    """

    def __init__(self, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lose = 0
        dialect = engine.dialect
        commit = dialect.do_commit

        def do_commit(dbapi_connection: Any) -> None:
            commit(dbapi_connection)
            if self.lose > 0:
                self.lose -= 1
                raise ConnectionResetError("the answer to COMMIT was lost")

        # The dialect's COMMIT, public in SQLAlchemy's dialect API, wrapped for the test.
        monkeypatch.setattr(dialect, "do_commit", do_commit)


async def _count(store: AlertDatabase, table: str) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}"))).scalar_one())


async def test_case_work_retried_after_a_lost_commit_answer_is_not_doubled(
    alert_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(_open())
        audited = await _count(store, "audit_log")
        losing = LosingCommitAnswers(store.engine, monkeypatch)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.cases.comment("A1", "olga", "CT reversed"),
            lambda: store.cases.acknowledge("A1", "olga", "seen"),
            lambda: store.cases.assign("A1", "crew-7", "olga"),
            lambda: store.cases.create_work_order("A1", "olga", "check CT", "crew-7"),
            lambda: store.users.create_user("crew-7", "crew", created_by="olga"),
        ]
        for call in calls:
            losing.lose = 1
            await call()
            assert losing.lose == 0
        order = (await store.cases.work_orders())[0]
        losing.lose = 1
        await store.cases.update_work_order(order.id, "olga", status=WorkOrderStatus.EN_ROUTE)
        assert store.core.retries == len(calls) + 1
        for table in ("comments", "acknowledgements", "assignments", "work_orders", "users"):
            assert await _count(store, table) == 1, table
        assert await _count(store, "tokens") == 1
        assert await _count(store, "audit_log") == audited + len(calls) + 1
    finally:
        await store.close()


async def test_a_write_resent_with_the_same_client_key_is_recorded_once(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(_open())
        first = await store.cases.comment("A1", "olga", "on my way", client_key="c-1")
        again = await store.cases.comment("A1", "olga", "on my way", client_key="c-1")
        assert again == first
        other = await store.cases.comment("A1", "olga", "on my way", client_key="c-2")
        assert other.id != first.id
        assert [c.id for c in await store.cases.comments("A1")] == [first.id, other.id]

        order = await store.cases.create_work_order("A1", "olga", "check", client_key="w-1")
        assert await store.cases.create_work_order("A1", "olga", "check", client_key="w-1") == order
        assert len(await store.cases.work_orders()) == 1
        done = await store.cases.update_work_order(
            order.id, "crew", outcome=Outcome.METER_FAULT, client_key="u-1"
        )
        # A resent "en route" under an already used key changes nothing.
        replay = await store.cases.update_work_order(
            order.id, "crew", status=WorkOrderStatus.EN_ROUTE, client_key="u-1"
        )
        assert replay.status is WorkOrderStatus.DONE
        assert replay.updated_at == done.updated_at
        ack = await store.cases.acknowledge("A1", "olga", client_key="a-1")
        assert await store.cases.acknowledge("A1", "olga", client_key="a-1") == ack
        assigned = await store.cases.assign("A1", "crew", "olga", client_key="s-1")
        assert await store.cases.assign("A1", "crew", "olga", client_key="s-1") == assigned
        actions = [e.action for e in await store.cases.audit(alert_id="A1")]
        assert actions == [
            "assign",
            "acknowledge",
            "work_order_update",
            "work_order_create",
            "comment",
            "comment",
            "alert_open",
        ]
    finally:
        await store.close()


async def test_create_user_checks_the_role_and_audits_who_created_it(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        with pytest.raises(ValueError, match="unknown role 'supervisor'"):
            await store.users.create_user("olga", "supervisor")
        await store.users.create_user("olga", "admin")
        await store.users.create_user("ivan", "crew", created_by="olga")
        entries = [(e.actor, e.detail) for e in await store.cases.audit()]
        assert entries == [
            ("olga", {"name": "ivan", "role": "crew"}),
            ("cli", {"name": "olga", "role": "admin"}),
        ]
    finally:
        await store.close()


async def test_upgrade_from_0001_keeps_the_rows_and_adds_client_keys(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await upgrade(store.engine, "0001")
        assert await current_revision(store.engine) == "0001"
        async with store.engine.begin() as conn:
            await _insert_active_alert(conn, "A1", 10)
            for text in ("old one", "old two"):
                await conn.execute(
                    sa.text(
                        "INSERT INTO comments (alert_id, author, text, at)"
                        " VALUES ('A1', 'olga', :text, 1)"
                    ),
                    {"text": text},
                )
        await store.open()
        assert await current_revision(store.engine) == head_revision()
        await store.cases.comment("A1", "olga", "new", client_key="k")
        await store.cases.comment("A1", "olga", "new", client_key="k")
        assert [c.text for c in await store.cases.comments("A1")] == ["old one", "old two", "new"]
    finally:
        await store.close()


async def test_work_order_covers_several_alerts_and_keeps_the_site_findings(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(_open())
        await store.alerts.apply(_open(id="B1", meter="M2", kind=AlertKind.BYPASS, start=20.0))
        await store.alerts.apply(_open(id="C1", meter="M3", kind=AlertKind.BYPASS, start=30.0))
        with pytest.raises(AlertNotFoundError):
            await store.cases.create_work_order(["A1", "nope"], "olga", "visit")
        with pytest.raises(ValueError, match="at least one alert"):
            await store.cases.create_work_order([], "olga", "visit")
        order = await store.cases.create_work_order(["B1", "A1", "B1"], "olga", "visit", "crew-7")
        assert order.alert_id == "B1"
        assert order.alert_ids == ["B1", "A1"]
        assert order.checklist == Checklist()
        assert [w.id for w in await store.cases.work_orders(alert_id="A1")] == [order.id]
        assert await store.cases.work_orders(alert_id="C1") == []

        checklist = Checklist(
            seals_intact=CheckAnswer.NO,
            wiring_correct=CheckAnswer.NO,
            overheating_or_loose_contacts=CheckAnswer.YES,
            notes="shunt across the current terminals",
            evidence="photos 1-3",
        )
        on_site = await store.cases.update_work_order(
            order.id, "crew-7", status=WorkOrderStatus.ON_SITE, checklist=checklist
        )
        assert on_site.status is WorkOrderStatus.ON_SITE
        assert on_site.checklist == checklist
        assert on_site.checklist.ct_ratio_fits_load is CheckAnswer.NOT_CHECKED
        with pytest.raises(ValueError, match=">= 0"):
            await store.cases.update_work_order(order.id, "crew-7", recovered_kwh=-1.0)
        done = await store.cases.update_work_order(
            order.id,
            "crew-7",
            outcome=Outcome.THEFT_CONFIRMED,
            outcome_method="bypass",
            recovered_kwh=412.5,
        )
        assert (done.status, done.outcome_method, done.recovered_kwh) == (
            WorkOrderStatus.DONE,
            "bypass",
            412.5,
        )
        assert done.checklist == checklist  # closing does not wipe the findings
        other = await store.cases.create_work_order("C1", "olga", "visit")
        await store.cases.update_work_order(other.id, "olga", outcome=Outcome.WIRING_ERROR)
        # The order over two kinds counts once for each of them.
        assert await store.cases.outcomes_by_kind() == {
            "bypass": {"theft_confirmed": 1, "wiring_error": 1},
            "reversal": {"theft_confirmed": 1},
        }
        assert await store.alerts.alerts_by_kind() == {"bypass": 2, "reversal": 1}
    finally:
        await store.close()


async def test_upgrade_from_0002_keeps_work_orders_and_renames_dispatched(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await upgrade(store.engine, "0002")
        assert await current_revision(store.engine) == "0002"
        async with store.engine.begin() as conn:
            await _insert_active_alert(conn, "A1", 10)
            for status, outcome in (("dispatched", None), ("done", "no_fault_found")):
                await conn.execute(
                    sa.text(
                        "INSERT INTO work_orders (alert_id, created_by, assignee, instructions,"
                        " status, created_at, updated_at, outcome, outcome_note)"
                        " VALUES ('A1', 'olga', 'crew-7', 'look', :status, 1, 1, :outcome, '')"
                    ),
                    {"status": status, "outcome": outcome},
                )
        await store.open()
        assert await current_revision(store.engine) == head_revision()
        orders = await store.cases.work_orders()
        assert [(w.status, w.alert_ids, w.outcome) for w in orders] == [
            (WorkOrderStatus.DONE, ["A1"], Outcome.NO_FAULT_FOUND),
            (WorkOrderStatus.EN_ROUTE, ["A1"], None),
        ]
        assert orders[1].checklist == Checklist()
        assert orders[1].recovered_kwh is None
        assert await store.cases.outcomes_by_kind() == {"reversal": {"no_fault_found": 1}}
        assert [w.id for w in await store.cases.work_orders(alert_id="A1")] == [
            w.id for w in orders
        ]
    finally:
        await store.close()


async def test_raised_is_written_by_the_open_and_never_changed(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await store.alerts.apply(
            AlertEvent(type=AlertEventType.OPEN, ts=130, alert=_alert(raised=130.0))
        )
        # An open that does not say when it was raised took place at the raising reading.
        await store.alerts.apply(
            AlertEvent(
                type=AlertEventType.OPEN,
                ts=95,
                alert=_alert(id="B1", meter="M2", kind=AlertKind.BYPASS, start=20.0),
            )
        )
        # Neither an update, a replayed open, nor the clear moves it.
        for kind, ts, changes in (
            (AlertEventType.UPDATE, 200, {"raised": 999.0}),
            (AlertEventType.UPDATE, 260, {}),
            (AlertEventType.OPEN, 130, {"raised": 5.0}),
            (AlertEventType.CLEAR, 400, {"raised": 999.0, "end": 300.0}),
        ):
            await store.alerts.apply(AlertEvent(type=kind, ts=ts, alert=_alert(**changes)))
        got = await store.alerts.get("A1")
        assert (got.start, got.raised, got.end) == (10.0, 130.0, 300.0)
        assert (await store.alerts.get("B1")).raised == 95.0
        assert (await store.alerts.listing("A1")).raised == 130.0
        whole, listed = await store.alerts.detail("B1")
        assert (whole.raised, listed.raised) == (95.0, 95.0)
        page, _ = await store.alerts.page(AlertQuery(sort="start", direction="asc"), 10)
        assert [(a.id, a.raised) for a in page] == [("A1", 130.0), ("B1", 95.0)]
        assert {a.id: a.raised for a in await store.alerts.list()} == {"A1": 130.0, "B1": 95.0}
        cleared = await store.alerts.clear("B1", "olga", "checked on site")
        assert cleared.raised == 95.0
        async with store.engine.connect() as conn:
            opened = await conn.execute(
                sa.text("SELECT alert FROM alert_history WHERE alert_id = 'B1' AND type = 'open'")
            )
            recorded = opened.scalar_one()
        as_json = recorded if isinstance(recorded, dict) else json.loads(recorded)
        assert as_json["raised"] == 95.0
    finally:
        await store.close()


async def test_upgrade_from_0004_fills_raised_from_the_recorded_open(alert_db_url: str) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        await upgrade(store.engine, "0004")
        async with store.engine.begin() as conn:
            await _insert_active_alert(conn, "B1", 20)
            await conn.execute(sa.text("UPDATE alerts SET meter = 'M2' WHERE id = 'B1'"))
            await _insert_active_alert(conn, "A1", 10)
            # A1 was opened at data time 70 (and updated at 130); B1 has no recorded open.
            for kind, ts in (("open", 70), ("update", 130)):
                await conn.execute(
                    sa.text(
                        "INSERT INTO alert_history (alert_id, type, data_ts, recorded_at, alert)"
                        " VALUES ('A1', :type, :ts, 0, '{}')"
                    ),
                    {"type": kind, "ts": ts},
                )
        await store.open()
        assert await current_revision(store.engine) == head_revision() == "0007"
        assert (await store.alerts.get("A1")).raised == 70.0
        assert (await store.alerts.get("B1")).raised == 20.0
        # The engine's later events for an alert it had open before keep the filled value.
        await store.alerts.apply(AlertEvent(type=AlertEventType.UPDATE, ts=190, alert=_alert()))
        assert (await store.alerts.get("A1")).raised == 70.0
        # Back down and up again: the column goes and comes back, the one-active index stays.
        await _downgrade(store.engine, "0004")
        async with store.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: [c["name"] for c in sa.inspect(sync).get_columns("alerts")]
            )
        assert "raised" not in columns
        await upgrade(store.engine)
        assert (await store.alerts.get("A1")).raised == 70.0
        assert not await store.alerts.apply(_open(id="A2"))
        assert store.alerts.duplicates_refused == 1
    finally:
        await store.close()


async def test_password_login_gives_expiring_tokens_and_keeps_only_a_hash(
    alert_db_url: str,
) -> None:
    clock = ManualClock()
    store = AlertDatabase(alert_db_url, clock=clock)
    try:
        olga, api_key = await store.users.create_user("olga", "operator", password="correct horse")
        assert olga.has_password
        machine, machine_key = await store.users.create_user("scada", "viewer")
        assert not machine.has_password
        async with store.engine.begin() as conn:
            stored = (
                await conn.execute(sa.text("SELECT password_hash FROM users WHERE name = 'olga'"))
            ).scalar_one()
        assert stored.startswith("scrypt$")
        assert "correct horse" not in stored
        assert await store.users.login("olga", "wrong horse!", 60) is None
        assert await store.users.login("nobody", "correct horse", 60) is None
        assert await store.users.login("scada", "", 60) is None  # no password: no login
        found = await store.users.login("olga", "correct horse", 60)
        assert found is not None
        user, token, expires_at = found
        assert user.name == "olga"
        assert expires_at == clock.now + 60
        assert (await store.users.user_for_token(token)) == olga
        clock.advance(59.5)
        assert (await store.users.user_for_token(token)) == olga  # remembered from here on
        clock.advance(1)
        # Expired, remembered or not: the memory never outlives the token.
        assert await store.users.user_for_token(token) is None
        assert await store.users.user_for_token(api_key) == olga  # API keys do not expire
        assert await store.users.user_for_token(machine_key) == machine
        await store.users.set_password("scada", "now with a password")
        assert await store.users.login("scada", "now with a password", 60) is not None
        with pytest.raises(KeyError):
            await store.users.set_password("nobody", "some password")
        with pytest.raises(ValueError, match="at least 8"):
            await store.users.set_password("olga", "short")
    finally:
        await store.close()


async def test_a_manual_clear_ends_the_alert_once_and_later_events_are_stale(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        evidence = {"onset": {"p1": -100.0}, "last_hold_ts": 130.0}
        assert await store.alerts.apply(_open(evidence=evidence))
        cleared = await store.alerts.clear("A1", "olga", "meter replaced", client_key="k1")
        assert cleared.end == 130.0
        assert cleared.evidence["cleared_by"]["manual"]["reason"] == "meter replaced"
        # A retry of the same call (its answer lost) gets the alert back, not an error...
        again = await store.alerts.clear("A1", "olga", "meter replaced", client_key="k1")
        assert again.end == 130.0
        # ...while another clear is refused.
        with pytest.raises(AlertAlreadyClearedError):
            await store.alerts.clear("A1", "olga", "again", client_key="k2")
        with pytest.raises(AlertNotFoundError):
            await store.alerts.clear("nope", "olga", "x")
        late = _alert(estimated_kwh_lost=9.0, evidence=evidence)
        assert not await store.alerts.apply(
            AlertEvent(type=AlertEventType.UPDATE, ts=190, alert=late)
        )
        assert store.alerts.stale_events == 1
        assert (await store.alerts.get("A1")).estimated_kwh_lost == 0.0
        assert [h["type"] for h in await store.alerts.history("A1")] == ["open", "clear"]
        clears = [e for e in await store.cases.audit(alert_id="A1") if e.action == "clear"]
        assert [(e.actor, e.detail) for e in clears] == [("olga", {"reason": "meter replaced"})]
        # The meter may open a new alert of the kind at once.
        assert await store.alerts.apply(_open(id="A2", start=200.0))
        assert await store.alerts.open_by_kind() == {"reversal": (1, 0.0)}
    finally:
        await store.close()


async def test_a_remembered_token_never_outlives_a_revocation_for_long(
    alert_db_url: str,
) -> None:
    clock = ManualClock()
    here = AlertDatabase(alert_db_url, clock=clock)
    other = AlertDatabase(alert_db_url, clock=clock)
    try:
        _, key_a = await here.users.create_user("olga", "operator")
        _, key_b = await here.users.create_user("otto", "operator")
        assert (await here.users.user_for_token(key_a)).name == "olga"  # type: ignore[union-attr]
        assert (await here.users.user_for_token(key_b)).name == "otto"  # type: ignore[union-attr]
        # Revoked by this process: refused at once.
        assert await here.users.revoke_token(key_a)
        assert await here.users.user_for_token(key_a) is None
        # Revoked by another process sharing the database: refused once the memory lapses.
        assert await other.users.revoke_token(key_b)
        clock.advance(users_module.TOKEN_CACHE_S - 0.5)
        assert (await here.users.user_for_token(key_b)).name == "otto"  # type: ignore[union-attr]
        clock.advance(1)
        assert await here.users.user_for_token(key_b) is None
        assert await here.users.user_for_token("never-issued") is None
    finally:
        await here.close()
        await other.close()


@pytest.mark.parametrize("sort", ["start", "kwh", "severity"])
async def test_keyset_pages_walk_every_sort_on_both_databases(
    alert_db_url: str, sort: AlertSort
) -> None:
    store = AlertDatabase(alert_db_url)
    rank = {"warning": 1, "minor": 2, "major": 3, "critical": 4}
    try:
        made = []
        for n in range(23):
            alert = _alert(
                id=f"A{n:02d}",
                meter=f"M{n}",
                severity=list(Severity)[n % 4],
                start=100.0 + 10 * (n % 5),  # ties on every key but the id
                estimated_kwh_lost=float(n % 3),
            )
            assert await store.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1, alert=alert))
            made.append(alert)
        keys = {
            "start": lambda a: (a.start, a.id),
            "kwh": lambda a: (a.estimated_kwh_lost, a.id),
            "severity": lambda a: (rank[a.severity.value], a.estimated_kwh_lost, a.id),
        }
        for direction in ("desc", "asc"):
            expected = sorted(made, key=keys[sort], reverse=direction == "desc")
            query = AlertQuery(sort=sort, direction=direction)
            seen: list[str] = []
            while True:
                page, after = await store.alerts.page(query, 5)
                seen += [a.id for a in page]
                if after is None:
                    break
                query = dataclasses.replace(query, after=after)
            assert seen == [a.id for a in expected], direction
    finally:
        await store.close()


async def test_a_manual_clear_loses_to_a_clear_committed_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    store = AlertDatabase(sqlite_url(path))
    fired: list[str] = []

    def engine_clears_first(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("UPDATE ALERTS") and not fired:
            # The engine's own clear, committed by another connection just before ours.
            fired.append(statement)
            other = sqlite3.connect(path)
            other.execute("UPDATE alerts SET end_ts = 250.0, active = 0 WHERE id = 'A1'")
            other.commit()
            other.close()

    try:
        await store.alerts.apply(_open(evidence={"last_hold_ts": 200.0}))
        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", engine_clears_first)
        with pytest.raises(AlertAlreadyClearedError):
            await store.alerts.clear("A1", "olga", "rewired")
        assert fired
        assert (await store.alerts.get("A1")).end == 250.0
        assert [e.action for e in await store.cases.audit(alert_id="A1")] == ["alert_open"]
        assert [h["type"] for h in await store.alerts.history("A1")] == ["open"]
    finally:
        await store.close()


async def test_a_lookup_overlapping_a_logout_never_keeps_the_token_alive(
    alert_db_url: str,
) -> None:
    store = AlertDatabase(alert_db_url)
    try:
        accepted_after_logout = 0
        for n in range(15):
            _, token = await store.users.create_user(f"u{n}", "operator")
            logout, request = store.users.revoke_token(token), store.users.user_for_token(token)
            revoked, _ = await asyncio.gather(logout, request)
            assert revoked
            accepted_after_logout += await store.users.user_for_token(token) is not None
        assert accepted_after_logout == 0
    finally:
        await store.close()


async def test_a_sqlite_store_with_every_connection_busy_says_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "SQLITE_POOL_WAIT_S", 0.3)
    store = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    try:
        await store.open()
        # Another part of the process holds both pooled connections (a lock elsewhere).
        async with store.engine.connect(), store.engine.connect():
            with pytest.raises(StoreUnavailableError, match="no free connection"):
                await store.alerts.list()
        assert await store.alerts.list() == []
    finally:
        await store.close()
