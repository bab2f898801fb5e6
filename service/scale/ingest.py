"""The ingest tier: readings in, checked, split by partition and published to JetStream.

It holds no detector state, so any number of ingest processes may run (each polling its
own gateways, or the same ones under [leases]). Each batch is published one message per
partition it touches; a publish is acknowledged by the stream before the next batch of
that process goes out, so every partition's messages keep the order of the readings.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nats.js import JetStreamContext

from collector.base import Source, deliveries, jittered_backoff
from meterguard.batch_codec import encode_batch
from meterguard.model import MeterRegistry, ReadingBatch
from meterguard.partitioning import Partitioner, fleet_digest
from meterguard.settings import ScaleSettings
from meterguard.validation import ReadingValidator, ValidationSettings, wall_clock
from service.replay import split_by_time
from service.scale.stream import subject
from service.telemetry_csv import ReadingsReader

log = logging.getLogger(__name__)

#: Data time one message of a recorded file spans (as replay cuts its batches).
RECORDED_SPAN_S = 300.0
SOURCE_RESTART_FIRST_S = 1.0
SOURCE_RESTART_MAX_S = 60.0


@dataclass(slots=True)
class IngestStats:
    """What an ingest process published."""

    readings: int = 0
    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    by_partition: Counter[int] = field(default_factory=Counter)


class Publisher:
    """Splits batches by partition and publishes each part to its subject."""

    def __init__(
        self, js: JetStreamContext, settings: ScaleSettings, registry: MeterRegistry
    ) -> None:
        self.js = js
        self.settings = settings
        self.partitioner = Partitioner(registry, settings.partitions)
        self.digest = fleet_digest(registry)
        self.stats = IngestStats()

    async def publish(self, batch: ReadingBatch) -> None:
        """Publish a batch's rows, one message per partition; return once the stream has them."""
        parts = self.partitioner.split(batch)
        if not parts:
            return
        payloads = {p: encode_batch(part, self.digest) for p, part in parts.items()}
        # One message per partition, all in flight together: a subject has at most one
        # message of this process outstanding, so its order is the readings' order.
        # The payload's digest as the message id: a batch sent again within the stream's
        # duplicate window (a retry, an MQTT redelivery of what was published) is stored once.
        await asyncio.gather(
            *(
                self.js.publish(
                    subject(self.settings, p),
                    data,
                    stream=self.settings.stream,
                    headers={"Nats-Msg-Id": hashlib.blake2b(data, digest_size=16).hexdigest()},
                )
                for p, data in payloads.items()
            )
        )
        stats = self.stats
        stats.readings += len(batch)
        stats.messages += len(payloads)
        stats.bytes += sum(len(d) for d in payloads.values())
        for p, part in parts.items():
            stats.by_partition[p] += len(part)


async def publish_recorded(
    publisher: Publisher,
    data_dir: Path,
    validation: ValidationSettings | None = None,
    span_s: float = RECORDED_SPAN_S,
    rate: float | None = None,
) -> IngestStats:
    """Publish DATA_DIR/readings.csv as recorded (a backfill, a benchmark, a test).

    The readings are checked as replay checks them and cut into batches of `span_s` of
    data time; `rate` (readings per second) paces them like a live fleet, None: at once.
    """
    registry = publisher.partitioner.registry
    reader = ReadingsReader(data_dir / "readings.csv", registry)
    validator = ReadingValidator(registry, validation)
    started = time.perf_counter()
    sent = 0
    for chunk in reader:
        for batch in split_by_time(validator.check(chunk), span_s):
            await publisher.publish(batch)
            sent += len(batch)
            if rate is not None:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    publisher.stats.seconds = time.perf_counter() - started
    log.info(
        "published %d readings in %d messages (%.1f MB) in %.1f s",
        publisher.stats.readings,
        publisher.stats.messages,
        publisher.stats.bytes / 1e6,
        publisher.stats.seconds,
    )
    return publisher.stats


async def pump_source(
    source: Source,
    publisher: Publisher,
    validator: ReadingValidator,
    also: Iterable[Callable[[ReadingBatch], object]] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Publish one source's readings until `stop`, restarting it with backoff when it fails.

    A delivery's commit callback (the MQTT source's acknowledgements) is called once the
    stream has taken its readings, so a crash of this process loses nothing.
    """
    rng = np.random.default_rng()
    attempt = 0
    stop = stop or asyncio.Event()
    while not stop.is_set():
        started = time.monotonic()
        try:
            async with source:
                async for delivery in deliveries(source):
                    batch = validator.check(delivery.batch, wall_clock())
                    await publisher.publish(batch)
                    for hook in also:
                        await _maybe_await(hook(batch))
                    if delivery.on_committed is not None:
                        delivery.on_committed()
                    if stop.is_set():
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("source %s failed: %s", source.name, exc)
        if time.monotonic() - started > SOURCE_RESTART_MAX_S:
            attempt = 0
        delay = jittered_backoff(attempt, SOURCE_RESTART_FIRST_S, SOURCE_RESTART_MAX_S, rng)
        attempt += 1
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            continue


async def _maybe_await(value: object) -> None:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        await value
