"""The partitioned log's engine: NATS JetStream against RabbitMQ streams, in one run.

The same messages go through both: a simulated fleet's readings cut as the ingest cuts
them (300 s of data time, split by partition, meterguard's binary batch codec). Each
engine gets one stream per design: JetStream one stream with a subject per partition
(file storage), RabbitMQ one stream queue per partition (x-queue-type=stream, durable).
Measured per engine:

- publish: every message, a batch's partitions in flight together and each confirmed
  by the server before the next batch (as `meterguard ingest` publishes);
- replay: every partition read back from its first message (as a worker taking a
  partition over does), the partitions one after another.

Servers: a private nats-server with JetStream (Debian's, on a free 127.0.0.1 port) and
the machine's RabbitMQ on 127.0.0.1:5672 (guest); the bench's queues are deleted after.

usage: python -m bench.stream_engines [--meters 2000] [--days 0.25] [--partitions 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.scale_out import nats_server, simulate
from meterguard.batch_codec import encode_batch
from meterguard.meters_csv import read_meters_csv
from meterguard.model import MeterRegistry
from meterguard.partitioning import Partitioner, fleet_digest
from meterguard.settings import ScaleSettings
from meterguard.validation import ReadingValidator
from service.replay import split_by_time
from service.scale.stream import stream_config, subject
from service.telemetry_csv import ReadingsReader

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Messages: per ingest batch, (partition, payload, readings).
Batches = list[list[tuple[int, bytes, int]]]


def messages(data: Path, partitions: int) -> Batches:
    """Return the fleet's readings as the ingest would publish them."""
    registry = MeterRegistry(read_meters_csv(data / "meters.csv"))
    split = Partitioner(registry, partitions)
    digest = fleet_digest(registry)
    validator = ReadingValidator(registry)
    out: Batches = []
    for chunk in ReadingsReader(data / "readings.csv", registry):
        for batch in split_by_time(validator.check(chunk), 300.0):
            out.append(
                [(p, encode_batch(b, digest), len(b)) for p, b in split.split(batch).items()]
            )
    return out


async def jetstream(url: str, batches: Batches, partitions: int) -> dict[str, float]:
    """Publish and replay through JetStream; return seconds for each."""
    settings = ScaleSettings(nats_url=url, partitions=partitions, stream="BENCH")
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(stream_config(settings))
    started = time.perf_counter()
    for batch in batches:
        await asyncio.gather(*(js.publish(subject(settings, p), d) for p, d, _n in batch))
    published = time.perf_counter() - started
    counts = {p: sum(1 for b in batches for q, _d, _n in b if q == p) for p in range(partitions)}
    started = time.perf_counter()
    for p in range(partitions):
        sub = await js.pull_subscribe(
            subject(settings, p),
            stream=settings.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        got = 0
        while got < counts[p]:
            got += len(await sub.fetch(64, timeout=5))
        await sub.unsubscribe()
    replayed = time.perf_counter() - started
    await nc.close()
    return {"publish_s": published, "replay_s": replayed}


async def rabbitmq_streams(batches: Batches, partitions: int) -> dict[str, float]:
    """Publish and replay through RabbitMQ stream queues; return seconds for each."""
    run = uuid.uuid4().hex[:8]
    names = [f"mgbench.{run}.{p}" for p in range(partitions)]
    connection = await aio_pika.connect_robust(RABBIT_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for name in names:
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "stream"})
        exchange = channel.default_exchange
        started = time.perf_counter()
        for batch in batches:
            await asyncio.gather(
                *(exchange.publish(aio_pika.Message(d), routing_key=names[p]) for p, d, _n in batch)
            )
        published = time.perf_counter() - started
        counts = [sum(1 for b in batches for q, _d, _n in b if q == p) for p in range(partitions)]
        started = time.perf_counter()
        reader = await connection.channel()
        await reader.set_qos(prefetch_count=64)
        for p, name in enumerate(names):
            queue = await reader.get_queue(name, ensure=False)
            got = 0
            done = asyncio.Event()
            if not counts[p]:
                continue

            async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal got
                await message.ack()
                got += 1
                if got >= counts[p]:  # noqa: B023 (read before the next partition starts)
                    done.set()  # noqa: B023

            tag = await queue.consume(take, arguments={"x-stream-offset": "first"})
            await asyncio.wait_for(done.wait(), 300)
            await queue.cancel(tag)
        replayed = time.perf_counter() - started
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()
    return {"publish_s": published, "replay_s": replayed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--days", type=float, default=0.25)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-engines-") as tmp:
        data = Path(tmp) / "fleet"
        simulate(data, args.meters, args.days, 7)
        batches = messages(data, args.partitions)
        readings = sum(n for b in batches for _p, _d, n in b)
        count = sum(len(b) for b in batches)
        size = sum(len(d) for b in batches for _p, d, _n in b)
        print(f"{count:,} messages, {size / 1e6:.1f} MB, {readings:,} readings")
        results = {}
        with nats_server(Path(tmp) / "nats") as url:
            results["jetstream"] = asyncio.run(jetstream(url, batches, args.partitions))
        results["rabbitmq_streams"] = asyncio.run(rabbitmq_streams(batches, args.partitions))
    summary = {}
    for engine, r in results.items():
        summary[engine] = {
            "publish_msgs_per_s": round(count / r["publish_s"]),
            "publish_readings_per_s": round(readings / r["publish_s"]),
            "replay_readings_per_s": round(readings / r["replay_s"]),
            "replay_mb_per_s": round(size / 1e6 / r["replay_s"], 1),
        }
        print(f"{engine}: {summary[engine]}")
    print(json.dumps({"messages": count, "readings": readings, "bytes": size, **summary}))


if __name__ == "__main__":
    main()
