"""The service around its sources: a poison payload, a failing source and an unreachable
broker stop nothing else, and each shows in /api/sources, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

import collector.mqtt_decoders
from api.app import create_app
from collector.mqtt import MqttSource, MqttSourceSettings
from collector.mqtt_decoders import Reading
from meterguard.model import Meter, ReadingBatch
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.status import StatusBoard
from service import supervisor
from service.supervisor import Service
from simulators.meter import SimulatedMeter
from simulators.mqtt_publisher import MqttPublisher
from tests.collector.conftest import Broker
from tests.conftest import free_port, make_batch

FLEET = [
    Meter(id="T1", service="3p4w", nominal_v=230),
    Meter(id="T2", service="3p4w", nominal_v=230),
]
#: The payload that once stopped the service for good.
POISON = b'{"ENERGY":{"Frequency":[]}}'


def _now_ts() -> float:
    """A reading time the validator believes: a minute in the past, whole seconds."""
    return float(int(time.time()) - 60)


async def _until(predicate: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _mqtt(broker_port: int, **extra: Any) -> MqttSourceSettings:
    return MqttSourceSettings.model_validate(
        {
            "name": "mq",
            "port": broker_port,
            "client_id": "mg-isolation",
            "flush_s": 0.02,
            "backoff_max_s": 1,
            "subscriptions": [{"topic": "tele/{meter}/SENSOR", "format": "tasmota"}],
            **extra,
        }
    )


def _settings(tmp_path: Path, api_port: int, *sources: MqttSourceSettings) -> Settings:
    return Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(port=api_port, anonymous_role="viewer"),
        meters=FLEET,
        sources=list(sources),
    )


def _tasmota(ts: float) -> bytes:
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return (
        f'{{"Time":"{when}","ENERGY":{{"Voltage":[230,231,229],"Current":[1.0,1.1,0.9],'
        f'"Power":[220,240,200],"Total":[1.0,1.0,1.0]}}}}'
    ).encode()


class _Running:
    """A service running in this process with its API on a port of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime.open(settings)
        self.service = Service(self.runtime)
        self.task: asyncio.Task[None] | None = None
        self.url = f"http://127.0.0.1:{settings.api.port}"

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self.service.run())
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not come up"
                await asyncio.sleep(0.05)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.task is not None
        self.service.request_stop()
        try:
            await asyncio.wait_for(self.task, 30)
        finally:
            self.task.cancel()
            await self.runtime.close()

    @property
    def mqtt(self) -> MqttSource:
        [source] = self.service.sources
        assert isinstance(source, MqttSource)
        return source


async def test_a_poison_payload_is_dead_lettered_once_and_the_service_keeps_serving(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decoder as it was: an empty Frequency array raised IndexError out of it.
    real = collector.mqtt_decoders.decode_tasmota

    def crashing(payload: bytes, meter: str | None, now: float) -> list[Reading]:
        if payload == POISON:
            raise IndexError("list index out of range")
        return real(payload, meter, now)

    monkeypatch.setattr(collector.mqtt_decoders, "decode_tasmota", crashing)
    settings = _settings(tmp_path, free_port(), _mqtt(broker.port))
    t0 = _now_ts()
    async with _Running(settings) as first:
        _, token = await first.runtime.users.create_user("olga", "operator")
        await first.mqtt.wait_connected(10)
        sims = [SimulatedMeter(meter=m, seed=k) for k, m in enumerate(FLEET)]
        with MqttPublisher(sims, port=broker.port, topic="tele/{meter}/SENSOR") as publisher:
            publisher.publish_raw("tele/T1/SENSOR", _tasmota(t0))
            publisher.publish_raw("tele/T1/SENSOR", POISON)
            publisher.publish_raw("tele/T2/SENSOR", _tasmota(t0))
        await _until(lambda: first.runtime.counters.readings_in >= 2)
        async with httpx.AsyncClient(base_url=first.url) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).json()["status"] == "ok"
            listed = await client.get("/api/sources", headers={"Authorization": f"Bearer {token}"})
        [mq] = listed.json()["items"]
        assert mq["state"] == "running"
        assert mq["restarts"] == 0
        assert mq["counters"]["decode_error"] == 1
        assert mq["counters"]["readings"] == 2
        [letter] = mq["dead_letters"]
        assert letter["reason"].startswith("decoder failed: IndexError")
        assert letter["payload"] == POISON.decode()
    # A second run on the same persistent session: nothing comes again, not the poison,
    # not the readings (acknowledged once stored), only what is new.
    async with _Running(_settings(tmp_path, free_port(), _mqtt(broker.port))) as second:
        await second.mqtt.wait_connected(10)
        with MqttPublisher([], port=broker.port) as publisher:
            publisher.publish_raw("tele/T1/SENSOR", _tasmota(t0 + 60))
        # Wait for the marker itself: anything redelivered would have come before it.
        async with asyncio.timeout(10):
            while not len((await second.runtime.series.query("T1", t0 + 59, t0 + 61, ["p1"])).ts):
                await asyncio.sleep(0.02)
        counters = second.mqtt.counters
        assert counters["received"] == 1
        assert counters["decode_error"] == 0
        assert list(second.mqtt.dead_letters) == []
        stored = await second.runtime.series.query("T1", t0 - 1, t0 + 61, ["p1"])
        assert stored.ts.tolist() == [t0, t0 + 60]


class FlakySource:
    """Raises after its first batch the first `failures` times it runs, then keeps going."""

    name = "flaky"

    def __init__(self, status: StatusBoard, failures: int) -> None:
        self.left = failures
        self.runs = 0
        self.counters: Counter[str] = Counter()
        self.health = status.register_source(self.name, self.counters, kind="test")

    async def __aenter__(self) -> Self:
        self.runs += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        yield make_batch([(_now_ts(), 0, {"v1": 230.0})])
        if self.left:
            self.left -= 1
            raise RuntimeError("the gateway is on fire")
        while True:
            await asyncio.sleep(0.05)
            yield make_batch([(_now_ts(), 0, {"v1": 230.0})])


class SteadySource:
    """Another source, delivering every 20 ms whatever happens to the first."""

    name = "steady"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        while True:
            await asyncio.sleep(0.02)
            yield make_batch([(_now_ts(), 1, {"v1": 231.0})])


async def test_a_failing_source_is_restarted_with_backoff_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "SOURCE_RESTART_FIRST_S", 0.4)
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(enabled=False, anonymous_role="viewer"),
        meters=FLEET,
    )
    runtime = Runtime.open(settings)
    flaky = FlakySource(runtime.status, failures=2)
    service = Service(runtime, sources=[flaky, SteadySource()])
    task = asyncio.create_task(service.run())
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # While it waits for its restart, readiness is degraded and says why...
            await _until(lambda: flaky.health.state == "failed")
            steady_before = runtime.counters.readings_in
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "degraded"
            assert body["checks"] == {"alert_store": "ok", "series_store": "ok"}
            assert body["sources"]["flaky"]["state"] == "failed"
            assert "the gateway is on fire" in body["sources"]["flaky"]["reason"]
            assert body["sources"]["steady"] == {"state": "running", "reason": None}
            # ... and the other source goes on meanwhile.
            await _until(lambda: runtime.counters.readings_in > steady_before + 5)
            # Two failures, two restarts, then it runs.
            await _until(lambda: flaky.runs == 3 and flaky.health.state == "running")
            assert (await client.get("/readyz")).status_code == 200
            listed = await client.get("/api/sources")
            [item] = listed.json()["items"]
            assert (item["name"], item["state"], item["restarts"]) == ("flaky", "running", 2)
            assert item["last_error"] == "RuntimeError: the gateway is on fire"
            assert item["last_error_at"].endswith("Z")
            metrics = (await client.get("/metrics")).text
            assert 'meterguard_source_restarts_total{source="flaky"} 2.0' in metrics
            assert 'meterguard_source_degraded{source="flaky"} 0.0' in metrics
        service.request_stop()
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        await runtime.close()
    assert flaky.health.state == "stopped"


@pytest.mark.mqtt
async def test_readiness_is_degraded_while_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")  # not started yet
    settings = _settings(tmp_path, free_port(), _mqtt(broker.port, client_id="mg-unreachable"))
    try:
        async with _Running(settings) as running, httpx.AsyncClient(base_url=running.url) as client:
            health = running.runtime.status.health("mq")
            await _until(lambda: health.state == "unreachable")
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            source = ready.json()["sources"]["mq"]
            assert source["state"] == "unreachable"
            assert f"broker 127.0.0.1:{broker.port}" in source["reason"]
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
            broker.start()
            await _until(lambda: health.state == "running", within_s=15)
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ok"
    finally:
        broker.stop()
