"""A manual clear in the API's process reaches a worker's engine by the store.

The worker's next update of the cleared alert is stale to the alert database; the worker
then drops the incident, so a reversal that still holds opens a new alert, as one
process would at the clear itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from meterguard.model import Meter, MeterRegistry
from meterguard.settings import ScaleSettings, Settings
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from service.scale.ingest import Publisher
from service.scale.stream import connect
from tests.conftest import make_batch
from tests.scale.conftest import partition_runner

START = float(int(time.time()) // 3600 * 3600 - 86_400)


async def _publish_minutes(publisher: Publisher, first: int, last: int) -> None:
    # A customer without generation exporting 500 W on phase 1: a reversal throughout.
    for minute in range(first, last):
        row = (START + 60.0 * minute, 0, {"v1": 230.0, "i1": 2.2, "p1": -500.0})
        await publisher.publish(make_batch([row]))


async def _until(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


async def test_a_reversal_cleared_by_hand_opens_again_while_it_holds(
    nats_url: str, tmp_path: Path
) -> None:
    registry = MeterRegistry([Meter(id="M1", service="1p2w", nominal_v=230)])
    settings = Settings(scale=ScaleSettings(nats_url=nats_url, partitions=1))
    nc, js = await connect(settings.scale, "test-clear")
    db = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    publisher = Publisher(js, settings.scale, registry)
    runner = partition_runner(registry, settings, js, db, 0)
    task = asyncio.create_task(runner.run())
    try:
        await _publish_minutes(publisher, 0, 10)

        async def opened() -> bool:
            return len(await db.alerts.list(active=True)) == 1

        await _until(opened)
        first = (await db.alerts.list(active=True))[0]
        await db.alerts.clear(first.id, "olga", "meter sealed; checking on site")
        # Past the engine's next update (every 900 s of data time) and a new raise.
        await _publish_minutes(publisher, 10, 40)

        async def reopened() -> bool:
            return len(await db.alerts.list(active=True)) == 1 and runner.progress.readings == 40

        await _until(reopened)
        second = (await db.alerts.list(active=True))[0]
        assert second.id != first.id
        assert second.start > first.start
        assert runner.progress.counters["cleared_by_hand"] == 1
        assert (await db.alerts.get(first.id)).end is not None  # stays cleared
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.close()
        await nc.close()
