"""The stream's two ends against a private nats-server: ingest publishing, a partition judged.

The ingest acknowledges a source's delivery only once the stream has its readings, and
restarts a source that fails. A partition's owner refuses damaged and foreign messages
(counted), and goes on with the next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from collector.base import Delivery
from meterguard.batch_codec import decode_batch, encode_batch
from meterguard.model import Meter, MeterRegistry, ReadingBatch
from meterguard.partitioning import Partitioner, fleet_digest
from meterguard.settings import ScaleSettings, Settings
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from meterguard.validation import ReadingValidator
from service.scale.ingest import Publisher, pump_source
from service.scale.stream import connect, last_sequence, subject
from tests.conftest import make_batch
from tests.scale.conftest import partition_runner

PARTITIONS = 4
#: Readings of an hour ago: the live checks refuse a reading from a wrong clock.
NOW = float(int(time.time()) - 3600)


def _fleet() -> MeterRegistry:
    return MeterRegistry(
        Meter(id=f"M{t}{i}", service="1p2w", nominal_v=230, transformer=f"T{t}")
        for t in range(5)
        for i in range(3)
    )


def _readings(registry: MeterRegistry, start: float) -> ReadingBatch:
    rows = [
        (start + 60.0 * k, slot, {"v1": 230.0, "i1": 2.0, "p1": 450.0})
        for k in range(2)
        for slot in range(len(registry))
    ]
    return make_batch(rows)


class _FlakySource:
    """Two deliveries with commit callbacks, then a failure; the second run delivers none."""

    name = "flaky"

    def __init__(self, registry: MeterRegistry, committed: list[float]) -> None:
        self.registry = registry
        self.committed = committed
        self.runs = 0

    async def __aenter__(self) -> Self:
        self.runs += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        async for delivery in self.deliveries():
            yield delivery.batch

    async def deliveries(self) -> AsyncIterator[Delivery]:
        if self.runs > 1:
            await asyncio.Event().wait()  # up, but quiet, until stopped
        for start in (NOW, NOW + 120.0):
            yield Delivery(_readings(self.registry, start), partial(self.committed.append, start))
        raise ConnectionError("gateway hung up")


async def test_ingest_publishes_by_partition_and_acknowledges_after_the_stream(
    nats_url: str,
) -> None:
    registry = _fleet()
    settings = ScaleSettings(nats_url=nats_url, partitions=PARTITIONS)
    nc, js = await connect(settings, "test-ingest")
    try:
        publisher = Publisher(js, settings, registry)
        committed: list[float] = []
        source = _FlakySource(registry, committed)
        stop = asyncio.Event()
        pump = asyncio.create_task(
            pump_source(source, publisher, ReadingValidator(registry), (), stop)
        )
        deadline = time.monotonic() + 10
        while source.runs < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        assert source.runs == 2  # restarted after the failure
        assert committed == [NOW, NOW + 120.0]
        split = Partitioner(registry, PARTITIONS)
        rows = 0
        for p in range(PARTITIONS):
            if not await last_sequence(js, settings, p):
                continue
            sub = await js.pull_subscribe(subject(settings, p), stream=settings.stream)
            for msg in await sub.fetch(10, timeout=2):
                batch = decode_batch(msg.data, fleet_digest(registry), len(registry))
                assert (split.of_slot[batch.slot] == p).all()
                rows += len(batch)
        # The live checks took every reading (an hour old, plausible values).
        assert rows == 2 * 2 * len(registry) == publisher.stats.readings
    finally:
        await nc.close()


async def test_a_partition_owner_refuses_damaged_and_foreign_messages(
    nats_url: str, tmp_path: Path
) -> None:
    registry = _fleet()
    settings = Settings(scale=ScaleSettings(nats_url=nats_url, partitions=PARTITIONS))
    split = Partitioner(registry, PARTITIONS)
    partition = int(split.of_slot[0])
    good = split.split(_readings(registry, NOW))[partition]
    nc, js = await connect(settings.scale, "test-worker")
    db = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    try:
        where = subject(settings.scale, partition)
        await js.publish(where, b"not a batch")
        await js.publish(where, encode_batch(good, b"otherfl1"))
        await js.publish(where, encode_batch(good, fleet_digest(registry)))
        runner = partition_runner(registry, settings, js, db, partition)
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 10
        while not runner.progress.caught_up and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert runner.progress.counters["bad_messages"] == 2
        assert runner.progress.readings == len(good)
        assert runner.progress.seq == 3
        assert np.isfinite(runner.engine.now)
    finally:
        await db.close()
        await nc.close()


async def test_a_batch_published_again_is_stored_once(nats_url: str) -> None:
    registry = _fleet()
    settings = ScaleSettings(nats_url=nats_url, partitions=PARTITIONS)
    nc, js = await connect(settings, "test-ingest")
    try:
        publisher = Publisher(js, settings, registry)
        batch = _readings(registry, NOW)
        await publisher.publish(batch)
        first = {p: await last_sequence(js, settings, p) for p in range(PARTITIONS)}
        await publisher.publish(batch)  # a retry, or a redelivered MQTT batch
        again = {p: await last_sequence(js, settings, p) for p in range(PARTITIONS)}
        assert again == first
        await publisher.publish(_readings(registry, NOW + 300.0))  # new readings are kept
        later = {p: await last_sequence(js, settings, p) for p in range(PARTITIONS)}
        assert all(later[p] > first[p] for p in range(PARTITIONS) if first[p])
    finally:
        await nc.close()
