"""InfluxDB write throughput: the store (encode + buffer + send) against bare client loops.

Starts InfluxDB 1.x (Debian `influxdb`) and VictoriaMetrics (Debian `victoria-metrics`) on
free 127.0.0.1 ports in a temp folder, then, in the same run and on the same servers:

- v1: InfluxSeriesStore(api="v1") fed ReadingBatches, against a bare aiohttp loop POSTing
  the same line protocol, prebuilt, to /write (influxdb-client has no v1 write API, and
  InfluxDB 1.6 answers its v2 endpoint with 404);
- v2: InfluxSeriesStore(api="v2") against a bare influxdb-client async loop writing the
  prebuilt line protocol to VictoriaMetrics' /api/v2/write.

Both sides keep the same number of requests in flight (`--in-flight`, the store's
max_in_flight; the bare loop runs that many workers over the prebuilt chunks), so the
ratio compares the store's own cost, not a difference in concurrency.

Usage: .venv/bin/python bench/influx.py [--meters 1000] [--steps 100] [--rounds 9]
    [--in-flight 2]

The ratio reported is the median over rounds of (store / bare) measured back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterguard.model import QUANTITIES, Meter, MeterRegistry, ReadingBatch
from meterguard.stores.config import InfluxSettings
from meterguard.stores.influx import InfluxSeriesStore
from meterguard.stores.influx.lineproto import LineEncoder
from tests.stores.servers import InfluxServer, VictoriaMetrics

BATCH_ROWS = 5000


def make_batches(meters: int, steps: int, start: float) -> list[ReadingBatch]:
    """One batch per poll cycle: every meter, all 16 quantities, float32 precision as decoded."""
    rng = np.random.default_rng(1)
    batches = []
    for k in range(steps):
        batch = ReadingBatch.empty(meters)
        batch.ts[:] = start + k * 5.0
        batch.slot[:] = np.arange(meters, dtype=np.int32)
        raw = rng.normal(230.0, 3.0, size=(len(QUANTITIES), meters)).astype(np.float32)
        batch.values[:] = raw.astype(np.float64)
        batches.append(batch)
    return batches


def prebuilt_chunks(
    registry: MeterRegistry, batches: list[ReadingBatch], measurement: str
) -> list[str]:
    """Build the same line protocol the store sends, before the clock starts."""
    encoder = LineEncoder(registry, measurement, "ms")
    lines = [line for b in batches for line in encoder.encode(b)[0]]
    return ["\n".join(lines[i : i + BATCH_ROWS]) for i in range(0, len(lines), BATCH_ROWS)]


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    """Return how many seconds fn took."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def create_db(url: str, name: str) -> None:
    """CREATE DATABASE on an InfluxDB 1.x server."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/query", data={"q": f"CREATE DATABASE {name}"}) as r,
    ):
        r.raise_for_status()


async def run_store(
    settings: InfluxSettings,
    registry: MeterRegistry,
    api: str,
    batches: list[ReadingBatch],
    spool: Path,
) -> float:
    """Return the seconds the store takes to accept and send every batch."""
    store = InfluxSeriesStore(settings, registry, api=api, spool_dir=spool)

    async def go() -> None:
        for b in batches:
            await store.write(b)
            await asyncio.sleep(0)  # a poll cycle ends: the sender gets its turn
        assert await store.flush(600)

    try:
        elapsed = await timed(go)
        stats = store.stats()
        assert stats["failed_requests"] == 0, stats
        assert stats["rows_written"] == stats["rows_in"], stats
        return elapsed
    finally:
        await store.close()


async def in_order(
    chunks: list[str], in_flight: int, send: Callable[[str], Awaitable[None]]
) -> None:
    """Send chunks oldest first with up to in_flight requests out at once."""
    pending = iter(chunks)

    async def worker() -> None:
        for chunk in pending:
            await send(chunk)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def bare_v1(url: str, db: str, chunks: list[str], in_flight: int) -> float:
    """Return the seconds a bare aiohttp loop takes to POST the chunks to /write."""
    async with aiohttp.ClientSession() as session:

        async def send(chunk: str) -> None:
            async with session.post(
                f"{url}/write", params={"db": db, "precision": "ms"}, data=chunk.encode()
            ) as r:
                assert r.status == 204, await r.text()

        return await timed(lambda: in_order(chunks, in_flight, send))


async def bare_v2(url: str, chunks: list[str], in_flight: int) -> float:
    """Return the seconds influxdb-client's async write API takes to write the chunks."""
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
    from influxdb_client.domain.write_precision import WritePrecision

    async with InfluxDBClientAsync(url=url, token="t", org="o") as client:
        api = client.write_api()

        async def send(chunk: str) -> None:
            # The client annotates write_precision as WritePrecision, whose members are str.
            precision = cast(WritePrecision, WritePrecision.MS)
            await api.write(bucket="b", record=chunk, write_precision=precision)

        return await timed(lambda: in_order(chunks, in_flight, send))


async def one_pair(
    api: str,
    url: str,
    registry: MeterRegistry,
    batches: list[ReadingBatch],
    tag: str,
    store_first: bool,
    spool: Path,
    in_flight: int,
) -> tuple[float, float]:
    """Time the bare loop and the store on the same data, each into a fresh target."""
    # v1: a database per run; v2 (one bucket): a measurement per run. Either way both
    # sides create the same number of new series.
    chunks = prebuilt_chunks(registry, batches, "meter" if api == "v1" else f"bare{tag}")
    n = sum(len(b) for b in batches)

    async def bare() -> float:
        if api == "v1":
            await create_db(url, f"bare_{tag}")
            return n / await bare_v1(url, f"bare_{tag}", chunks, in_flight)
        return n / await bare_v2(url, chunks, in_flight)

    async def store() -> float:
        if api == "v1":
            await create_db(url, f"store_{tag}")
            settings = InfluxSettings(
                url=url, database=f"store_{tag}", batch_rows=BATCH_ROWS, max_in_flight=in_flight
            )
        else:
            settings = InfluxSettings(
                url=url,
                token="t",
                org="o",
                bucket="b",
                measurement=f"store{tag}",
                batch_rows=BATCH_ROWS,
                max_in_flight=in_flight,
            )
        return n / await run_store(settings, registry, api, batches, spool)

    if store_first:
        s_rate = await store()
        b_rate = await bare()
    else:
        b_rate = await bare()
        s_rate = await store()
    return b_rate, s_rate


async def main() -> None:
    """Run the rounds and print each pair and the median table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=2,
        help="requests in flight, for the store (max_in_flight) and the bare loop alike",
    )
    args = parser.parse_args()
    registry = MeterRegistry(
        [
            Meter(
                id=f"M{i:05d}",
                service="3p4w",
                nominal_v=230,
                transformer=f"T{i // 25}",
                customer_class="residential",
            )
            for i in range(args.meters)
        ]
    )
    n = args.meters * args.steps
    rates: dict[str, list[tuple[float, float]]] = {"v1": [], "v2": []}
    with tempfile.TemporaryDirectory(prefix="mg-bench-") as tmp:
        folder = Path(tmp)
        influx, vm = InfluxServer(folder / "influx"), VictoriaMetrics(folder)
        try:
            influx.start()
            vm.start()
            for r in range(args.rounds):
                # Fresh timestamps per round; the order of the pair alternates, so neither
                # side always runs on a warmer (or busier) machine.
                base = 1_700_000_000.0 + r * 10_000_000
                batches = make_batches(args.meters, args.steps, base)
                for api, url in (("v1", influx.url), ("v2", vm.url)):
                    pair = await one_pair(
                        api,
                        url,
                        registry,
                        batches,
                        f"{r}",
                        r % 2 == 1,
                        folder / f"{api}{r}",
                        args.in_flight,
                    )
                    rates[api].append(pair)
                print(
                    f"round {r + 1}: "
                    + ", ".join(
                        f"{api} bare {b:,.0f}/s store {s:,.0f}/s ({s / b:.2f})"
                        for api, ((b, s), *_) in ((k, v[::-1]) for k, v in rates.items())
                    ),
                    flush=True,
                )
        finally:
            influx.stop()
            vm.stop()
    print(
        f"\n{n:,} readings x {len(QUANTITIES)} fields per run; medians of {args.rounds} rounds;"
        f" {args.in_flight} request(s) in flight for the store and the bare loops alike"
    )
    labels = {
        "v1": ("bare aiohttp loop to /write (InfluxDB 1.6)", "InfluxSeriesStore v1"),
        "v2": ("bare influxdb-client async loop (VictoriaMetrics)", "InfluxSeriesStore v2"),
    }
    print("| API | bare loop, prebuilt lines | readings/s | store | readings/s | ratio |")
    print("|---|---|---:|---|---:|---:|")
    for api, pairs in rates.items():
        bare_label, store_label = labels[api]
        ratio = statistics.median(s / b for b, s in pairs)
        bare = statistics.median(b for b, _ in pairs)
        store = statistics.median(s for _, s in pairs)
        print(
            f"| {api} | {bare_label} | {bare:,.0f} | {store_label} | {store:,.0f} | {ratio:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
