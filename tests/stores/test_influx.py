"""The InfluxDB series store against real InfluxDB 1.6 and VictoriaMetrics servers."""

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from api.readiness import check_readiness
from meterguard.errors import StoreUnavailableError
from meterguard.model import QUANTITY_INDEX, Meter, MeterRegistry, ReadingBatch
from meterguard.status import StatusBoard
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from meterguard.stores.config import InfluxSettings
from meterguard.stores.influx import InfluxSeriesStore
from meterguard.stores.influx.lineproto import LineEncoder
from meterguard.stores.influx.spool import Spool
from meterguard.stores.influx.store import InfluxQueryError
from meterguard.stores.sqlite_series import bucket_width_s
from tests.conftest import free_port, make_batch
from tests.stores.servers import CountingProxy, InfluxServer, VictoriaMetrics


def _registry(n: int = 10) -> MeterRegistry:
    return MeterRegistry(
        [
            Meter(
                id=f"M{i}",
                service="3p4w",
                nominal_v=230,
                transformer=f"T{i % 3}",
                customer_class="residential",
            )
            for i in range(n)
        ]
    )


def _stream(registry: MeterRegistry, start: float, seconds: int, step: float = 1.0) -> ReadingBatch:
    """One reading per meter per step: v1 = 230 + slot, p1 = the time offset."""
    times = start + np.arange(0, seconds, step)
    n_meters = len(registry)
    batch = ReadingBatch.empty(len(times) * n_meters)
    batch.ts[:] = np.repeat(times, n_meters)
    batch.slot[:] = np.tile(np.arange(n_meters, dtype=np.int32), len(times))
    batch.values[QUANTITY_INDEX["v1"]] = 230.0 + batch.slot
    batch.values[QUANTITY_INDEX["p1"]] = batch.ts - start
    return batch


def _settings(url: str, **changes: object) -> InfluxSettings:
    base: dict[str, object] = {
        "url": url,
        "database": f"mg_{uuid.uuid4().hex[:8]}",
        "create_database": True,
        "batch_rows": 500,
        "flush_interval_s": 0.1,
        "timeout_s": 2.0,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
    }
    base.update(changes)
    return InfluxSettings.model_validate(base)


async def _until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait until condition() holds; fail the test if it does not within the deadline."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within_s} s")
        await asyncio.sleep(0.02)


async def _count(store: InfluxSeriesStore, field: str = "v1") -> int:
    result = await store.influxql(f'SELECT count("{field}") FROM "meter"')
    series = result.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def test_line_protocol_escapes_tags_and_leaves_out_what_was_not_measured() -> None:
    registry = MeterRegistry(
        [
            Meter(id="A,1 x", service="1p2w", nominal_v=230, transformer="T=1"),
            Meter(id="B", service="3p4w", nominal_v=230, customer_class="small shop"),
        ]
    )
    batch = make_batch(
        [
            (100.5, 0, {"v1": 230.25}),
            (100.5, 1, {"v1": 231.0, "p2": -5.5, "e_imp": 12345.678}),
            (101.0, 1, {}),
            (102.0, 1, {"v2": float("inf")}),
        ]
    )
    batch.events[3] = 16
    lines, empty = LineEncoder(registry, "my meter", "ms").encode(batch)
    assert empty == 1
    assert sorted(lines) == sorted(
        [
            r"my\ meter,meter=A\,1\ x,transformer=T\=1 v1=230.25 100500",
            r"my\ meter,meter=B,class=small\ shop v1=231.0,p2=-5.5,e_imp=12345.678 100500",
            r"my\ meter,meter=B,class=small\ shop events=16i 102000",
        ]
    )
    lines_s, _ = LineEncoder(registry, "m", "s").encode(batch.take(np.array([0])))
    assert lines_s == [r"m,meter=A\,1\ x,transformer=T\=1 v1=230.25 100"]


def test_spool_keeps_order_across_memory_and_files_and_drops_only_past_its_bound(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, memory_rows=20, max_rows=50)
    for i in range(5):
        spool.push(f"chunk{i}", 10)
    assert spool.rows == 50
    assert spool.disk_rows == 30  # the three oldest went to files
    assert spool.dropped_rows == 0
    spool.push("chunk5", 10)  # past the bound: the oldest goes, counted
    assert spool.dropped_rows == 10
    sent = []
    while (chunk := spool.head()) is not None:
        sent.append(chunk.load())
        spool.remove(chunk)
    assert sent == [f"chunk{i}" for i in range(1, 6)]
    assert list(tmp_path.iterdir()) == []

    # Persisted chunks come back, in order, in a new spool over the same folder.
    spool = Spool(tmp_path, memory_rows=100, max_rows=1000)
    spool.push("a", 3)
    spool.push("b", 4)
    assert spool.persist() == 7
    again = Spool(tmp_path, memory_rows=100, max_rows=1000)
    assert again.recovered_rows == 7
    again.push("c", 1)
    out = []
    while (chunk := again.head()) is not None:
        out.append(chunk.load())
        again.remove(chunk)
    assert out == ["a", "b", "c"]


async def test_v1_round_trip_with_raw_and_downsampled_queries(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(5)
    store = InfluxSeriesStore(
        _settings(influxdb.url), registry, api="v1", spool_dir=tmp_path / "spool"
    )
    try:
        await store.create_database()
        batch = _stream(registry, 1_700_000_000.0, 600)
        await store.write(batch)
        await store.write(batch)  # written twice: InfluxDB keeps one point per series and time
        assert await store.flush(10)
        assert await _count(store) == len(batch)
        assert store.stats()["rows_written"] == 2 * len(batch)

        raw = await store.query("M3", 1_700_000_100.0, 1_700_000_109.0, ["v1", "p1", "i2"])
        assert raw.ts.tolist() == [1_700_000_100.0 + k for k in range(10)]
        assert raw.values["v1"].tolist() == [233.0] * 10
        assert raw.values["p1"].tolist() == [100.0 + k for k in range(10)]
        assert np.isnan(raw.values["i2"]).all()

        start, end = 1_700_000_000.0, 1_700_000_599.0
        down = await store.query("M3", start, end, ["p1"], points=60)
        assert len(down.ts) == 60
        width = bucket_width_s(start, end, 60)
        offsets = np.arange(600.0)
        expected = [np.mean(offsets[(offsets // width) == k]) for k in range(60)]
        assert down.ts[0] == start
        assert np.allclose(down.values["p1"], expected)
        with pytest.raises(ValueError, match="unknown quantities"):
            await store.query("M3", start, end, ['v1") FROM x; DROP'])
    finally:
        await store.close()


async def test_v1_rejected_chunk_is_counted_and_does_not_block_the_rest(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(2)
    settings = _settings(influxdb.url, batch_rows=10)
    store = InfluxSeriesStore(settings, registry, api="v1", spool_dir=tmp_path / "spool")
    try:
        await store.create_database()
        # A string field "v2" in the same shard makes every float v2 a type conflict (400).
        request = urllib.request.Request(
            f"{influxdb.url}/write?db={settings.database}&precision=s",
            data=b'meter,meter=M0 v2="text" 1700000000',
            method="POST",
        )
        await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=5).read())
        bad = make_batch([(1_700_000_001.0 + k, 0, {"v2": 1.0}) for k in range(10)])
        good = make_batch([(1_700_000_001.0 + k, 1, {"v1": 2.0}) for k in range(20)])
        await store.write(bad)
        await store.write(good)
        assert await store.flush(10)
        stats = store.stats()
        assert stats["rows_rejected"] == 10
        assert stats["rows_written"] == 20
        assert await _count(store, "v1") == 20
    finally:
        await store.close()


@pytest.mark.influxdb
async def test_v1_buffers_while_down_spills_persists_at_stop_and_replays_at_start(
    tmp_path: Path,
) -> None:
    server = InfluxServer(tmp_path / "influx")
    registry = _registry(10)
    settings = _settings(server.url, memory_rows=1000, timeout_s=1.0)
    spool_dir = tmp_path / "spool"
    batch = _stream(registry, 1_700_000_000.0, 500)  # 5000 readings
    store = InfluxSeriesStore(settings, registry, api="v1", spool_dir=spool_dir)
    await store.write(batch)
    await _until(lambda: bool(store.stats()["server_down"]))
    stats = store.stats()
    assert stats["rows_buffered"] == 5000
    assert stats["rows_spilled"] >= 4000  # memory holds at most 1000
    await store.close()  # cannot flush: the rest goes to files
    assert store.stats()["rows_written"] == 0
    assert sum(int(p.stem.split("-")[1]) for p in spool_dir.glob("*.lp")) == 5000

    server.start()
    try:
        again = InfluxSeriesStore(settings, registry, api="v1", spool_dir=spool_dir)
        try:
            # create_database: the store makes the database before its first write.
            await again.write(_stream(registry, 1_700_001_000.0, 10))
            assert await again.flush(20)
            assert await _count(again) == 5100
            assert list(spool_dir.glob("*.lp")) == []
        finally:
            await again.close()
    finally:
        server.stop()


async def test_v1_missing_database_is_retried_not_lost(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(3)
    store = InfluxSeriesStore(
        _settings(influxdb.url, create_database=False),
        registry,
        api="v1",
        spool_dir=tmp_path / "spool",
    )
    try:
        await store.write(_stream(registry, 1_700_000_000.0, 100))
        await _until(lambda: store.stats()["failed_requests"] >= 1)  # 404: no database
        assert store.stats()["rows_written"] == 0
        await store.create_database()
        assert await store.flush(10)
        assert await _count(store) == 300
    finally:
        await store.close()


@pytest.mark.influxdb
async def test_v1_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path)
    registry = _registry(10)
    settings = _settings(server.url, memory_rows=500, max_buffered_rows=2000)
    store = InfluxSeriesStore(settings, registry, api="v1", spool_dir=tmp_path / "spool")
    await store.write(_stream(registry, 1_700_000_000.0, 100))  # 1000 readings, oldest
    await store.write(_stream(registry, 1_700_000_100.0, 200))  # 2000 newer ones
    assert store.stats()["rows_dropped"] == 1000
    server.start()
    try:
        await store.create_database()
        assert await store.flush(20)
        assert await _count(store) == 2000
        first = await store.influxql('SELECT first("p1") FROM "meter"')
        # The oldest 100 s are the ones gone.
        assert first["series"][0]["values"][0][0] == 1_700_000_100_000
    finally:
        await store.close()
        server.stop()


async def test_v2_write_api_through_influxdb_client_reaches_victoria_metrics(
    victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    registry = _registry(4)
    tag = uuid.uuid4().hex[:8]
    settings = _settings(
        victoria.url, measurement=f"mg{tag}", token="t", org="o", bucket="b", precision="ms"
    )
    store = InfluxSeriesStore(settings, registry, api="v2", spool_dir=tmp_path / "spool")
    try:
        batch = _stream(registry, 1_700_000_000.0, 250)
        await store.write(batch)
        await store.write(batch)
        assert await store.flush(10)
        assert store.stats()["failed_requests"] == 0
    finally:
        await store.close()
    exported = [json.loads(line) for line in victoria.export(f'mg{tag}_v1{{meter="M2"}}')]
    assert len(exported) == 1
    assert exported[0]["metric"]["transformer"] == "T2"
    assert exported[0]["values"] == [232.0] * 250
    assert exported[0]["timestamps"][:2] == [1_700_000_000_000, 1_700_000_001_000]
    p1 = [json.loads(line) for line in victoria.export(f'{{__name__="mg{tag}_p1"}}')]
    assert sum(len(s["values"]) for s in p1) == len(batch)


@pytest.mark.victoriametrics
async def test_v2_write_buffers_while_the_server_is_down(tmp_path: Path) -> None:
    server = VictoriaMetrics(tmp_path)
    registry = _registry(4)
    settings = _settings(server.url, measurement="down", token="t", org="o", bucket="b")
    store = InfluxSeriesStore(settings, registry, api="v2", spool_dir=tmp_path / "spool")
    try:
        await store.write(_stream(registry, 1_700_000_000.0, 100))
        await _until(lambda: bool(store.stats()["server_down"]))
        server.start()
        assert await store.flush(20)
        exported = [json.loads(line) for line in server.export('{__name__="down_v1"}')]
        assert sum(len(s["values"]) for s in exported) == 400
    finally:
        await store.close()
        server.stop()


async def test_v1_slow_server_timeouts_are_retried_and_nothing_is_sent_twice(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(10)
    async with CountingProxy(influxdb.url) as proxy:
        proxy.stalled = True
        settings = _settings(proxy.url, timeout_s=0.5)
        store = InfluxSeriesStore(settings, registry, api="v1", spool_dir=tmp_path / "spool")
        try:
            await store.write(_stream(registry, 1_700_000_000.0, 300))
            await _until(lambda: store.stats()["failed_requests"] >= 1)  # timed out
            assert proxy.requests_stalled >= 1
            assert store.stats()["rows_written"] == 0
            proxy.stalled = False
            assert await store.flush(20)
            # Every reading reached the server exactly once: a resent chunk would count
            # twice here (InfluxDB itself would hide it, one point per series and time).
            assert proxy.lines_acknowledged == 3000
            assert store.stats()["rows_written"] == 3000
            assert await _count(store) == 3000
            assert await _count(store, "p1") == 3000
        finally:
            await store.close()


async def test_v1_credentials_go_in_a_basic_auth_header_not_the_url(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(2)
    async with CountingProxy(influxdb.url) as proxy:
        settings = _settings(proxy.url, username="olga", password="s3cret")
        store = InfluxSeriesStore(settings, registry, api="v1", spool_dir=tmp_path / "spool")
        try:
            await store.write(_stream(registry, 1_700_000_000.0, 10))
            assert await store.flush(10)
            assert await _count(store) == 20
        finally:
            await store.close()
    paths = {path for path, _, _ in proxy.requests}
    assert paths == {"/write", "/query"}
    for _path, query, auth in proxy.requests:
        assert "u" not in query
        assert "p" not in query
        assert auth == "Basic b2xnYTpzM2NyZXQ="  # base64 of olga:s3cret


async def test_query_failures_raise_store_unavailable(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(2)
    # Nothing listens on the port: connection refused.
    down = InfluxSeriesStore(
        _settings(f"http://127.0.0.1:{free_port()}"),
        registry,
        api="v1",
        spool_dir=tmp_path / "down",
    )
    try:
        with pytest.raises(StoreUnavailableError, match="InfluxDB unavailable"):
            await down.query("M0", 0, 10, ["v1"])
    finally:
        await down.close()
    async with CountingProxy(influxdb.url) as proxy:
        store = InfluxSeriesStore(
            _settings(proxy.url), registry, api="v1", spool_dir=tmp_path / "spool"
        )
        try:
            # InfluxDB's own error (no such database) is a typed error too.
            with pytest.raises(InfluxQueryError, match="database not found"):
                await store.query("M0", 0, 10, ["v1"])
            proxy.garbage = True  # a gateway answering with an HTML page
            with pytest.raises(StoreUnavailableError, match="not JSON"):
                await store.query("M0", 0, 10, ["v1"])
        finally:
            await store.close()


def test_spool_never_drops_a_chunk_being_sent(tmp_path: Path) -> None:
    spool = Spool(tmp_path, memory_rows=100, max_rows=30)
    spool.push("a", 10)
    spool.push("b", 10)
    sending = spool.head()
    assert sending is not None
    spool.in_flight.add(sending)  # "a" is out to the server
    spool.push("c", 10)
    spool.push("d", 10)  # over the bound: "b" goes, not "a"
    assert spool.dropped_rows == 10
    assert spool.head() is sending
    spool.in_flight.discard(sending)
    spool.remove(sending)  # written: counted once, as written only
    out = []
    while (chunk := spool.head()) is not None:
        out.append(chunk.load())
        spool.remove(chunk)
    assert out == ["c", "d"]


async def test_readiness_asks_influxdb_itself_and_says_unavailable_when_it_is_down(
    influxdb: InfluxServer, tmp_path: Path
) -> None:
    registry = _registry(2)
    alerts = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    await alerts.open()
    # A database that does not exist yet: a fresh server before the first write is ready.
    up = InfluxSeriesStore(_settings(influxdb.url), registry, api="v1", spool_dir=tmp_path / "a")
    down = InfluxSeriesStore(
        _settings(f"http://127.0.0.1:{free_port()}"), registry, api="v1", spool_dir=tmp_path / "b"
    )
    try:
        await up.ping()
        ready = await check_readiness(alerts.alerts, up, StatusBoard())
        assert ready.status == "ok"
        assert ready.store_errors == {"alert_store": None, "series_store": None}
        with pytest.raises(StoreUnavailableError, match="InfluxDB unavailable"):
            await down.ping()
        failed = await check_readiness(alerts.alerts, down, StatusBoard())
        assert failed.status == "unavailable"
        assert failed.store_errors["alert_store"] is None
        assert "InfluxDB unavailable" in str(failed.store_errors["series_store"])
    finally:
        await up.close()
        await down.close()
        await alerts.close()
