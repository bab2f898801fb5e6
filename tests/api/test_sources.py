"""Each source's own counters and dead letters in /metrics and GET /api/sources, from real
sources: MQTT through the machine's Mosquitto, Modbus against the simulated gateway."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from collector.modbus import ModbusSource, ModbusSourceSettings
from collector.mqtt import MqttSource, MqttSourceSettings
from meterguard.model import Meter
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.status import DuplicateSourceError
from simulators.meter import SimulatedMeter
from simulators.modbus_gateway import ModbusGateway
from simulators.mqtt_publisher import MqttPublisher
from tests.conftest import free_port

FLEET = [Meter(id="T1", service="3p4w", nominal_v=230)]
#: Not JSON; longer than the preview, with a byte that is not UTF-8 near the start.
GARBAGE = b"\x00\xff" + b"x" * 300
#: JSON, but without the reading's time.
NO_TS = b'{"v1": 230}'


@dataclass
class Api:
    client: httpx.AsyncClient
    runtime: Runtime
    tokens: dict[str, str]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Scrape /metrics: every sample by name and sorted labels."""
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role=None),
        meters=FLEET,
    )
    runtime = Runtime.open(settings)
    tokens = {}
    for name, role in [("olga", "operator"), ("vic", "viewer"), ("carl", "crew")]:
        _, tokens[name] = await runtime.users.create_user(name, role)
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Api(client, runtime, tokens)
    await runtime.close()


def _mqtt_source(runtime: Runtime, name: str, prefix: str) -> MqttSource:
    settings = MqttSourceSettings.model_validate(
        {
            "name": name,
            "client_id": f"{prefix}-source",
            # Nothing is left behind on the shared broker once the test disconnects.
            "session_expiry_s": 0,
            "flush_s": 0.02,
            "subscriptions": [{"topic": f"{prefix}/{{meter}}/reading", "format": "meterguard"}],
        }
    )
    return MqttSource(settings, runtime.registry, runtime.status)


async def _feed_mqtt(source: MqttSource, prefix: str) -> None:
    """Publish two malformed payloads, then a good reading; return once it is decoded."""
    sims = [SimulatedMeter(meter=FLEET[0], seed=1, base_kw=2.0)]
    async with source:
        await source.wait_connected(10)
        topic = f"{prefix}/{{meter}}/reading"
        with MqttPublisher(sims, topic=topic, client_id=f"{prefix}-publisher") as publisher:
            publisher.publish_raw(f"{prefix}/T1/reading", GARBAGE)
            publisher.publish_raw(f"{prefix}/T1/reading", NO_TS)
            publisher.publish_round(1_767_225_600.0)

        async def first_reading() -> None:
            # One connection, QoS 1: the garbage arrives (and is counted) before the reading.
            async for batch in source.batches():
                if len(batch):
                    return

        await asyncio.wait_for(first_reading(), 10)


@pytest.mark.mqtt
async def test_mqtt_malformed_payloads_are_counted_and_kept_for_operators(api: Api) -> None:
    prefix = f"mgtest-{uuid.uuid4().hex[:12]}"
    await _feed_mqtt(_mqtt_source(api.runtime, "mq", prefix), prefix)

    samples = await api.samples()
    events = "meterguard_source_events_total"
    assert samples[(events, (("event", "malformed"), ("source", "mq")))] == 2
    assert samples[(events, (("event", "received"), ("source", "mq")))] == 3
    assert samples[(events, (("event", "readings"), ("source", "mq")))] == 1
    assert samples[("meterguard_source_dead_letters", (("source", "mq"),))] == 2
    # The per-meter figures are still there, unchanged.
    assert samples[("meterguard_source_readings_total", (("source", "mq"),))] == 1

    operator = await api.client.get("/api/sources", headers=api.auth("olga"))
    assert operator.status_code == 200
    body = operator.json()
    assert body["count"] == 1
    [mq] = body["items"]
    assert mq["name"] == "mq"
    assert mq["kind"] == "mqtt"
    assert mq["counters"]["malformed"] == 2
    assert mq["counters"]["received"] == 3
    assert (mq["meters_polled"], mq["meters_online"]) == (1, 1)
    assert mq["dead_letters_kept"] == 2
    newest, oldest = mq["dead_letters"]
    assert newest["topic"] == oldest["topic"] == f"{prefix}/T1/reading"
    assert "ts missing" in newest["reason"]
    assert newest["payload"] == NO_TS.decode()
    assert oldest["reason"].startswith("not JSON")
    # 200 bytes: the NUL stays, the byte that is not UTF-8 becomes U+FFFD.
    assert oldest["payload"] == "\x00\ufffd" + "x" * 198
    assert oldest["at"].endswith("Z")
    assert datetime.fromisoformat(oldest["at"]) <= datetime.fromisoformat(newest["at"])

    only_newest = await api.client.get("/api/sources?limit=1", headers=api.auth("olga"))
    assert [d["reason"] for d in only_newest.json()["items"][0]["dead_letters"]] == [
        newest["reason"]
    ]

    for reader in ("vic", "carl"):
        seen = await api.client.get("/api/sources", headers=api.auth(reader))
        assert seen.status_code == 200
        [item] = seen.json()["items"]
        assert item["counters"]["malformed"] == 2
        assert item["dead_letters_kept"] == 2
        assert item["dead_letters"] is None


async def test_modbus_requests_show_in_metrics_and_the_list(api: Api) -> None:
    port = free_port()
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "timeout_s": 1.0,
            "retries": 0,
            "devices": [{"meter": "T1", "unit": 1, "profile": "sdm630"}],
        }
    )
    sims = [(1, SimulatedMeter(meter=FLEET[0], seed=0, base_kw=3.0))]
    async with (
        ModbusGateway(sims, port=port) as gateway,
        ModbusSource(settings, api.runtime.registry, api.runtime.status) as source,
    ):
        assert await source.ensure_connected()
        await source.poll_once()
        await source.poll_once()
    assert gateway.requests_served == 4  # an SDM630 takes two reads per poll

    samples = await api.samples()
    key = ("meterguard_source_events_total", (("event", "requests"), ("source", "gw")))
    assert samples[key] == 4
    # A Modbus source keeps no dead letters, so it has no such gauge.
    assert ("meterguard_source_dead_letters", (("source", "gw"),)) not in samples

    listed = await api.client.get("/api/sources", headers=api.auth("olga"))
    [gw] = listed.json()["items"]
    assert gw["kind"] == "modbus"
    assert gw["counters"] == {"requests": 4, "readings": 2}
    assert (gw["meters_polled"], gw["meters_online"]) == (1, 1)
    assert gw["dead_letters_kept"] is None
    assert gw["dead_letters"] is None


async def test_a_second_source_of_the_same_name_is_refused(api: Api) -> None:
    prefix = f"mgtest-{uuid.uuid4().hex[:12]}"
    _mqtt_source(api.runtime, "dup", prefix)
    with pytest.raises(DuplicateSourceError, match="two sources are named 'dup'"):
        _mqtt_source(api.runtime, "dup", prefix)
    assert isinstance(DuplicateSourceError("x"), ValueError)


async def test_sources_need_a_token_and_a_sane_limit(api: Api) -> None:
    assert (await api.client.get("/api/sources")).status_code == 401
    for limit in (0, 501):
        refused = await api.client.get(f"/api/sources?limit={limit}", headers=api.auth("olga"))
        assert refused.status_code == 422
    empty = await api.client.get("/api/sources", headers=api.auth("vic"))
    assert empty.json() == {"items": [], "count": 0}
