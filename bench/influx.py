"""InfluxDB write throughput: the store (encode + buffer + send) against bare client loops.

Starts InfluxDB 1.x (Debian `influxdb`) and VictoriaMetrics (Debian `victoria-metrics`) on
free 127.0.0.1 ports in a temp folder, then, in the same run and on the same servers:

- v1: InfluxSeriesStore(api="v1") fed ReadingBatches, against a bare aiohttp loop POSTing
  the same line protocol, prebuilt, to /write (influxdb-client has no v1 write API, and
  InfluxDB 1.6 answers its v2 endpoint with 404);
- v2: InfluxSeriesStore(api="v2") against a bare influxdb-client async loop writing the
  prebuilt line protocol to VictoriaMetrics' /api/v2/write.

Usage: .venv/bin/python bench/influx.py [--meters 1000] [--steps 200] [--rounds 3]
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


def prebuilt_chunks(registry: MeterRegistry, batches: list[ReadingBatch]) -> list[str]:
    """Build the same line protocol the store sends, before the clock starts."""
    encoder = LineEncoder(registry, "meter", "ms")
    lines = [line for b in batches for line in encoder.encode(b)[0]]
    return ["\n".join(lines[i : i + BATCH_ROWS]) for i in range(0, len(lines), BATCH_ROWS)]


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def create_db(url: str, name: str) -> None:
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


async def bare_v1(url: str, db: str, chunks: list[str]) -> float:
    async with aiohttp.ClientSession() as session:

        async def go() -> None:
            for chunk in chunks:
                async with session.post(
                    f"{url}/write", params={"db": db, "precision": "ms"}, data=chunk.encode()
                ) as r:
                    assert r.status == 204, await r.text()

        return await timed(go)


async def bare_v2(url: str, chunks: list[str]) -> float:
    from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

    async with InfluxDBClientAsync(url=url, token="t", org="o") as client:
        api = client.write_api()

        async def go() -> None:
            for chunk in chunks:
                await api.write(bucket="b", record=chunk, write_precision="ms")

        return await timed(go)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
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
    with tempfile.TemporaryDirectory(prefix="mg-bench-") as tmp:
        folder = Path(tmp)
        influx, vm = InfluxServer(folder / "influx"), VictoriaMetrics(folder)
        influx.start()
        vm.start()
        try:
            results: dict[str, list[float]] = {
                k: [] for k in ("bare_v1", "store_v1", "bare_v2", "store_v2")
            }
            for r in range(args.rounds):
                # Fresh timestamps per run so every run creates and fills the same shape of data.
                base = 1_700_000_000.0 + r * 10_000_000
                batches = make_batches(args.meters, args.steps, base)
                chunks = prebuilt_chunks(registry, batches)
                for key in ("bare_v1", "store_v1"):
                    db = f"{key}_{r}"
                    await create_db(influx.url, db)
                    if key == "bare_v1":
                        elapsed = await bare_v1(influx.url, db, chunks)
                    else:
                        settings = InfluxSettings(
                            url=influx.url, database=db, batch_rows=BATCH_ROWS
                        )
                        elapsed = await run_store(
                            settings, registry, "v1", batches, folder / f"s{r}"
                        )
                    results[key].append(n / elapsed)
                batches = make_batches(args.meters, args.steps, base + 5_000_000)
                chunks = prebuilt_chunks(registry, batches)
                results["bare_v2"].append(n / await bare_v2(vm.url, chunks))
                settings = InfluxSettings(
                    url=vm.url, token="t", org="o", bucket="b", batch_rows=BATCH_ROWS
                )
                batches = make_batches(args.meters, args.steps, base + 7_000_000)
                results["store_v2"].append(
                    n / await run_store(settings, registry, "v2", batches, folder / f"v{r}")
                )
                print(
                    f"round {r + 1}: "
                    + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items()),
                    flush=True,
                )
        finally:
            influx.stop()
            vm.stop()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{n:,} readings x {len(QUANTITIES)} fields per run, median of {args.rounds} rounds")
    rows = [
        ("v1 bare aiohttp loop, prebuilt lines (InfluxDB 1.6)", "bare_v1", "bare_v1"),
        ("v1 InfluxSeriesStore (InfluxDB 1.6)", "store_v1", "bare_v1"),
        (
            "v2 bare influxdb-client async loop, prebuilt lines (VictoriaMetrics)",
            "bare_v2",
            "bare_v2",
        ),
        ("v2 InfluxSeriesStore (VictoriaMetrics)", "store_v2", "bare_v2"),
    ]
    print("| path | readings/s | ratio to bare loop |")
    print("|---|---:|---:|")
    for label, key, ref in rows:
        print(f"| {label} | {med[key]:,.0f} | {med[key] / med[ref]:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
