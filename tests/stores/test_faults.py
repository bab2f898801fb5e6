"""Outages with real servers: InfluxDB stopped, PostgreSQL restarted, meterguard killed."""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from meterguard.model import (
    QUANTITY_INDEX,
    Alert,
    AlertEvent,
    AlertEventType,
    AlertKind,
    Meter,
    MeterRegistry,
    ReadingBatch,
    Severity,
)
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from meterguard.stores.config import InfluxSettings
from meterguard.stores.influx import InfluxSeriesStore
from meterguard.stores.records import WorkOrderStatus
from simulators.fleet import demo_fleet
from simulators.modbus_gateway import ModbusGateway
from tests.conftest import free_port
from tests.stores.servers import CountingProxy, InfluxServer, PrivatePostgres
from tests.stores.service_proc import FLEET

OUTAGE_S = 60.0


@pytest.mark.influxdb
@pytest.mark.apart  # a private influxd, stopped for a minute of real time
async def test_influxdb_stopped_for_a_minute_loses_and_doubles_nothing(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path / "influx")
    try:
        server.start()
        # Through a proxy that counts the lines the server acknowledged: a chunk sent twice
        # would count twice there, though InfluxDB keeps one point per series and time.
        async with CountingProxy(server.url) as proxy:
            await _outage_run(server, proxy, tmp_path)
    finally:
        server.stop()


async def _outage_run(server: InfluxServer, proxy: CountingProxy, tmp_path: Path) -> None:
    meters = 50
    registry = MeterRegistry(
        [Meter(id=f"M{i}", service="3p4w", nominal_v=230, transformer="T1") for i in range(meters)]
    )
    settings = InfluxSettings(
        url=proxy.url,
        database="faults",
        batch_rows=2000,
        flush_interval_s=0.2,
        # Long enough that a written chunk is never timed out (and resent) on a busy box.
        timeout_s=10.0,
        memory_rows=5000,  # small, so that most of the outage goes through spill files
        retry_initial_s=0.2,
        retry_max_s=2.0,
    )
    store = InfluxSeriesStore(settings, registry, api="v1", spool_dir=tmp_path / "spool")
    await store.create_database()
    produced = 0
    step = 0
    start = 1_700_000_000.0

    async def produce(seconds: float) -> None:
        # Ten readings per meter per second of wall time, each with a distinct p1 = step.
        nonlocal produced, step
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            batch = ReadingBatch.empty(meters)
            batch.ts[:] = start + step * 0.1
            batch.slot[:] = np.arange(meters, dtype=np.int32)
            batch.values[QUANTITY_INDEX["p1"]] = float(step)
            batch.values[QUANTITY_INDEX["v1"]] = 230.0
            await store.write(batch)
            produced += meters
            step += 1
            await asyncio.sleep(0.1)

    try:
        await produce(3)
        await asyncio.to_thread(server.stop)
        await produce(OUTAGE_S)
        during = store.stats()
        assert during["server_down"]
        assert during["rows_spilled"] > 0
        await asyncio.to_thread(server.start)
        await produce(3)
        assert await store.flush(60)
        stats = store.stats()
        result = await store.influxql('SELECT count("p1"), sum("p1") FROM "meter"')
        count, total = result["series"][0]["values"][0][1:]
        assert count == produced
        # Every step once per meter: a reading stored twice or lost would change the sum.
        assert total == meters * sum(range(step))
        assert stats["rows_dropped"] == 0
        assert stats["rows_buffered"] == 0
        assert stats["rows_written"] == produced
        assert proxy.lines_acknowledged == produced
        assert list((tmp_path / "spool").glob("*.lp")) == []
    finally:
        await store.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Under /tmp itself: the postgres user must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="mg-pg-"))
    try:
        server = PrivatePostgres(folder)
        try:
            server.start()
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _open(i: int) -> AlertEvent:
    alert = Alert(
        id=f"M{i}-reversal-{1000 + i}",
        meter=f"M{i}",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1000.0 + i,
        confidence=0.9,
        summary="reversed CT",
        evidence={"onset": {"p1": -float(i)}},
    )
    return AlertEvent(type=AlertEventType.OPEN, ts=alert.start, alert=alert)


async def test_postgresql_restarted_while_alerts_are_raised(
    private_postgres: PrivatePostgres,
) -> None:
    url = private_postgres.dsn.replace("postgresql://", "postgresql+asyncpg://")
    store = AlertDatabase(url, retry_for_s=60)
    events = [_open(i) for i in range(200)]
    # Every alert also gets an update and every other one a clear.
    for i in range(200):
        opened = events[i].alert
        events.append(
            AlertEvent(
                type=AlertEventType.UPDATE,
                ts=opened.start + 60,
                alert=opened.model_copy(update={"estimated_kwh_lost": 1.0}),
            )
        )
        if i % 2 == 0:
            events.append(
                AlertEvent(
                    type=AlertEventType.CLEAR,
                    ts=opened.start + 500,
                    alert=opened.model_copy(update={"end": opened.start + 100}),
                )
            )
    try:
        await store.open()
        restarted = asyncio.Event()

        async def restart_midway() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(private_postgres.stop, "fast")
            await asyncio.sleep(2.0)  # down for a while, not just a blip
            await asyncio.to_thread(private_postgres.start)
            restarted.set()

        restarter = asyncio.create_task(restart_midway())
        for event in events:
            await store.alerts.apply(event)
            await asyncio.sleep(0.005)
        await restarter
        assert restarted.is_set()
        assert store.core.retries > 0  # the restart did hit the writes
        assert store.alerts.duplicates_refused == 0
        assert store.alerts.orphan_events == 0
        alerts = await store.alerts.list(limit=1000)
        assert sorted(a.id for a in alerts) == sorted(e.alert.id for e in events[:200])
        assert len(await store.alerts.list(active=True, limit=1000)) == 100
        assert all(a.estimated_kwh_lost == 1.0 for a in alerts if a.active)
        async with store.engine.connect() as conn:
            history = (await conn.execute(sa.text("SELECT COUNT(*) FROM alert_history"))).scalar()
        assert history == len(events)
    finally:
        await store.close()


async def test_postgresql_restarted_while_case_work_is_written(
    private_postgres: PrivatePostgres,
) -> None:
    url = private_postgres.dsn.replace("postgresql://", "postgresql+asyncpg://")
    store = AlertDatabase(url, retry_for_s=60)
    try:
        for i in range(20):
            await store.alerts.apply(_open(i))
        restarted = asyncio.Event()

        async def restart_midway() -> None:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(private_postgres.stop, "fast")
            await asyncio.sleep(2.0)
            await asyncio.to_thread(private_postgres.start)
            restarted.set()

        restarter = asyncio.create_task(restart_midway())
        rounds = 0
        while not restarted.is_set() or rounds < 60:
            alert_id = _open(rounds % 20).alert.id
            await store.cases.comment(alert_id, "olga", f"note {rounds}")
            order = await store.cases.create_work_order(alert_id, "olga", f"visit {rounds}")
            await store.cases.update_work_order(order.id, "olga", status=WorkOrderStatus.EN_ROUTE)
            rounds += 1
            await asyncio.sleep(0.005)
        await restarter
        assert store.core.retries > 0  # the restart did hit the writes
        async with store.engine.connect() as conn:

            async def count(sql: str) -> int:
                return int((await conn.execute(sa.text(sql))).scalar_one())

            assert await count("SELECT COUNT(*) FROM comments") == rounds
            assert await count("SELECT COUNT(DISTINCT text) FROM comments") == rounds
            assert await count("SELECT COUNT(*) FROM work_orders") == rounds
            assert await count("SELECT COUNT(*) FROM work_orders WHERE status = 'en_route'") == (
                rounds
            )
            for action in ("comment", "work_order_create", "work_order_update"):
                audited = f"SELECT COUNT(*) FROM audit_log WHERE action = '{action}'"
                assert await count(audited) == rounds, action
    finally:
        await store.close()


def _spawn(port: int, data_dir: Path, db_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.stores.service_proc", str(port), str(data_dir), db_url],
            stdout=out,
            stderr=out,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def _history(store: AlertDatabase) -> list[tuple[str, str, float]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT alert_id, type, data_ts FROM alert_history ORDER BY seq")
        )
        return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.slow  # two service processes over a live fleet, in real time
async def test_meterguard_killed_mid_stream_keeps_its_open_alerts(tmp_path: Path) -> None:
    fleet, truth = demo_fleet(**FLEET)
    port = free_port()
    url = sqlite_url(tmp_path / "alerts.sqlite")
    log = tmp_path / "service.log"
    epoch = time.time()
    gateway = ModbusGateway(
        [(u + 1, sim) for u, sim in enumerate(fleet)],
        port=port,
        clock=lambda: 12 * 3600.0 + time.time() - epoch,
    )
    store = AlertDatabase(url)
    async with gateway:
        first = _spawn(port, tmp_path, url, log)
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                if len(await store.alerts.list(active=True)) == len(truth):
                    break
                await asyncio.sleep(0.3)
            await asyncio.sleep(1.5)  # updates flowing: the kill lands mid-stream
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        before = await store.alerts.list(limit=1000)
        assert {(a.meter, a.phase) for a in before if a.active} == {
            (t.meter, t.phase) for t in truth
        }, log.read_text()[-3000:]
        killed_at = len(await _history(store))

        second = _spawn(port, tmp_path, url, log)
        try:
            # Generous: on a busy CI machine the new process takes a while to start.
            deadline = time.monotonic() + 60
            resumed: set[str] = set()
            while time.monotonic() < deadline and len(resumed) < len(before):
                resumed = {h[0] for h in (await _history(store))[killed_at:] if h[1] == "update"}
                await asyncio.sleep(0.3)
        finally:
            second.terminate()
            try:
                second.wait(20)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
    after = await store.alerts.list(limit=1000)
    history = await _history(store)
    await store.close()
    # Same alerts, still open, carried on by the restarted process (updates to the same
    # ids), and not one second alert or second "open" for any of them.
    assert sorted(a.id for a in after) == sorted(a.id for a in before)
    assert all(a.active for a in after)
    assert resumed == {a.id for a in before}, (history[killed_at:], log.read_text()[-3000:])
    opens = [h[0] for h in history if h[1] == "open"]
    assert sorted(opens) == sorted(a.id for a in before)
    assert "refused a second active" not in log.read_text()
