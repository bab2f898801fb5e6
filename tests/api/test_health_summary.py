"""GET /api/health on a running service: each state it can be in, as /readyz decides it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from api.app import create_app
from collector.modbus import ModbusSourceSettings
from meterguard.model import Meter, ReadingBatch
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.status import StatusBoard
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from service import supervisor
from service.supervisor import Service
from simulators.meter import SimulatedMeter
from simulators.modbus_gateway import ModbusGateway
from tests.api.serving import serving
from tests.conftest import free_port, make_batch

FLEET = [
    Meter(id="A1", service="3p4w", nominal_v=230),
    Meter(id="B1", service="3p4w", nominal_v=230),
]


def _gateway_source(name: str, port: int, meter: str) -> ModbusSourceSettings:
    return ModbusSourceSettings.model_validate(
        {
            "name": name,
            "port": port,
            "interval_s": 0.2,
            # Generous: the gateways share the test's event loop with the service and the
            # API, which a loaded machine can stall for half a second.
            "timeout_s": 3.0,
            "retries": 0,
            "backoff_max_s": 0.5,
            "devices": [{"meter": meter, "unit": 1, "profile": "sdm630"}],
        }
    )


async def _until(predicate: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def _both(client: httpx.AsyncClient) -> tuple[dict[str, Any], httpx.Response]:
    """Return the health summary (always a 200) and the readiness answer beside it."""
    summary = await client.get("/api/health")
    assert summary.status_code == 200
    return summary.json(), await client.get("/readyz")


async def test_a_gateway_out_of_reach_degrades_the_service_until_it_answers(
    tmp_path: Path,
) -> None:
    port_a, port_b = free_port(), free_port()
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        # No anonymous reading: the summary must need no token, like the probes.
        api=ApiSettings(port=free_port()),
        meters=FLEET,
        sources=[_gateway_source("gwA", port_a, "A1"), _gateway_source("gwB", port_b, "B1")],
    )
    runtime = Runtime.open(settings)
    service = Service(runtime)
    url = f"http://127.0.0.1:{settings.api.port}"
    gateway_b = ModbusGateway([(1, SimulatedMeter(meter=FLEET[1], seed=2))], port=port_b)
    async with ModbusGateway([(1, SimulatedMeter(meter=FLEET[0], seed=1))], port=port_a):
        task = asyncio.create_task(service.run())
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                await _until(lambda: runtime.status.health("gwB").state == "unreachable")
                await _until(lambda: runtime.engine_activity.last_batch_at is not None)
                await _until(lambda: runtime.status.health("gwA").state == "running")
                before = time.time()
                body, ready = await _both(client)
                assert (await client.get("/api/alerts")).status_code == 401
                assert body["status"] == "degraded" == ready.json()["status"]
                assert ready.status_code == 503
                sources = {s["name"]: s for s in body["sources"]}
                assert sources["gwA"]["state"] == "running"
                assert sources["gwA"]["kind"] == "modbus"
                assert (sources["gwA"]["meters_polled"], sources["gwA"]["meters_online"]) == (1, 1)
                assert sources["gwB"]["state"] == "unreachable"
                assert str(port_b) in sources["gwB"]["reason"]
                assert sources["gwB"]["meters_online"] == 0
                assert [(s["name"], s["state"]) for s in body["stores"]] == [
                    ("alert_store", "ok"),
                    ("series_store", "ok"),
                ]
                engine = body["engine"]
                assert engine["batches"] >= 1
                assert engine["readings"] >= 1
                assert before - 10 < _epoch(engine["last_batch_at"]) <= time.time()
                assert 0 <= engine["last_batch_age_s"] < 10
                # The simulator stamps readings with the wall clock.
                assert abs(_epoch(engine["data_time"]) - before) < 10
                assert engine["rest_days_found"] == []
                assert body["meters"] == 2
                # A day the engine took as one of rest (tests/service/test_supervisor.py
                # shows the service recording it) is listed by its local date.
                runtime.engine_activity.rest_days_found.append(date(2026, 5, 1))
                body, _ = await _both(client)
                assert body["engine"]["rest_days_found"] == ["2026-05-01"]

                await gateway_b.start()
                await _until(lambda: runtime.status.health("gwB").state == "running")
                body, ready = await _both(client)
                assert body["status"] == "ok" == ready.json()["status"]
                assert ready.status_code == 200
                assert {s["name"]: s["reason"] for s in body["sources"]} == {
                    "gwA": None,
                    "gwB": None,
                }
            service.request_stop()
            await asyncio.wait_for(task, 30)
        finally:
            task.cancel()
            await gateway_b.stop()
            await runtime.close()


async def test_a_store_that_does_not_answer_makes_it_unavailable(tmp_path: Path) -> None:
    # An API process that runs no engine; its alert database goes away under it.
    settings = Settings(storage=StorageSettings(data_dir=tmp_path), meters=FLEET)
    runtime = Runtime.open(settings)
    live = runtime.alerts
    try:
        async with (
            serving(create_app(settings, runtime)) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            body, ready = await _both(client)
            assert body["status"] == "ok" == ready.json()["status"]
            assert body["sources"] == []
            assert body["engine"] == {
                "last_batch_at": None,
                "last_batch_age_s": None,
                "data_time": None,
                "batches": 0,
                "readings": 0,
                "rest_days_found": [],
            }
            # A real store whose connections are gone stands in for a database that went away.
            dead = AlertDatabase(sqlite_url(tmp_path / "gone.sqlite"))
            await dead.close()
            runtime.alerts = dead.alerts
            body, ready = await _both(client)
            assert body["status"] == "unavailable" == ready.json()["status"]
            assert ready.status_code == 503
            stores = {s["name"]: s for s in body["stores"]}
            assert stores["alert_store"]["state"] == "error"
            assert stores["alert_store"]["error"]
            assert stores["series_store"] == {
                "name": "series_store",
                "backend": "sqlite",
                "state": "ok",
                "error": None,
            }
            schema = (await client.get("/openapi.json")).json()
            answer = schema["paths"]["/api/health"]["get"]["responses"]["200"]
            assert answer["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/HealthSummary"
            }
    finally:
        runtime.alerts = live
        await runtime.close()


class FailingOnce:
    """A source whose first run delivers one reading and then raises; later runs deliver."""

    name = "fragile"

    def __init__(self, status: StatusBoard) -> None:
        self.runs = 0
        self.counters: Counter[str] = Counter()
        status.register_source(self.name, self.counters, kind="test")

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
        while True:
            yield make_batch([(float(int(time.time()) - 5), 0, {"v1": 230.0})])
            if self.runs == 1:
                raise RuntimeError("the serial server lost its mind")
            await asyncio.sleep(0.1)


async def test_a_failed_source_degrades_the_service_until_its_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "SOURCE_RESTART_FIRST_S", 2.0)
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(enabled=False),
        meters=FLEET,
    )
    runtime = Runtime.open(settings)
    source = FailingOnce(runtime.status)
    service = Service(runtime, sources=[source])
    task = asyncio.create_task(service.run())
    health = runtime.status.health("fragile")
    try:
        async with (
            serving(create_app(settings, runtime)) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            await _until(lambda: health.state == "failed")
            body, ready = await _both(client)
            assert body["status"] == "degraded" == ready.json()["status"]
            [fragile] = body["sources"]
            assert fragile["kind"] == "test"
            assert fragile["state"] == "failed"
            assert fragile["reason"] == "RuntimeError: the serial server lost its mind"
            assert fragile["restarts"] == 0
            assert body["engine"]["readings"] == 1
            assert body["engine"]["last_batch_at"] is not None
            await _until(lambda: health.state == "running" and source.runs == 2)
            body, ready = await _both(client)
            assert body["status"] == "ok" == ready.json()["status"]
            [fragile] = body["sources"]
            assert (fragile["state"], fragile["reason"], fragile["restarts"]) == (
                "running",
                None,
                1,
            )
        service.request_stop()
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        await runtime.close()
