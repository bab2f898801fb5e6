"""The MQTT source against a private Mosquitto, over real TCP."""

import asyncio
import logging
import math
import socket
import threading
import time

import pytest

from collector.mqtt import MqttSource, MqttSourceSettings
from meterguard.model import Meter, MeterRegistry, ReadingBatch
from meterguard.status import StatusBoard
from simulators.meter import SimulatedMeter
from simulators.mqtt_publisher import TOPICS, MqttPublisher, PublishTimeoutError
from tests.collector.conftest import Broker

FLEET = [
    Meter(id="T1", service="3p4w", nominal_v=230),
    Meter(id="T2", service="3p4w", nominal_v=230),
    Meter(id="S1", service="1p2w", nominal_v=230),
]
SOURCE_FORMAT = {"shelly": "shelly", "shelly-rpc": "shelly", "tasmota": "tasmota"}
#: Both protocols the source speaks, for the tests where they differ: the session kept
#: while away (session expiry against clean session), reconnects, shared subscriptions,
#: QoS 2, and the connection a message is acknowledged on.
PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


def _settings(broker: Broker, fmt: str, **extra: object) -> MqttSourceSettings:
    return MqttSourceSettings.model_validate(
        {
            "name": "mq",
            "port": broker.port,
            "client_id": "meterguard-test",
            "flush_s": 0.02,
            "subscriptions": [
                {"topic": TOPICS[fmt], "format": SOURCE_FORMAT.get(fmt, "meterguard")}
            ],
            **extra,
        }
    )


async def collect_readings(source: MqttSource, rows: int, within_s: float = 10.0) -> ReadingBatch:
    got: list[ReadingBatch] = []
    total = 0

    async def run() -> None:
        nonlocal total
        async for batch in source.batches():
            got.append(batch)
            total += len(batch)
            if total >= rows:
                return

    await asyncio.wait_for(run(), within_s)
    return ReadingBatch.concat(got)


def _sims(seed: int = 0) -> list[SimulatedMeter]:
    return [SimulatedMeter(meter=m, seed=seed + k, base_kw=2.0) for k, m in enumerate(FLEET)]


MARKER_TS = 1_800_000_000.0


async def _publish_marker_round(source: MqttSource, broker: Broker, qos: int = 1) -> ReadingBatch:
    """Publish one round stamped MARKER_TS and collect three readings: anything delivered
    twice before it shows up here with another time stamp."""
    with MqttPublisher(_sims(), port=broker.port, format_="meterguard", qos=qos) as publisher:
        publisher.publish_round(MARKER_TS)
    return await collect_readings(source, 3)


@PROTOCOLS
@pytest.mark.parametrize("fmt", ["shelly", "shelly-rpc", "tasmota", "meterguard"])
async def test_each_payload_format_arrives_as_readings(
    broker: Broker, fmt: str, protocol: str
) -> None:
    registry = MeterRegistry(FLEET)
    status = StatusBoard()
    source = MqttSource(_settings(broker, fmt, protocol=protocol), registry, status)
    publisher_sims = _sims()
    twins = _sims()  # same seeds: what the publisher's meters read at the same times
    async with source:
        await source.wait_connected(10)
        ts = 1_767_225_600.0  # 2026-01-01T00:00:00Z
        with MqttPublisher(publisher_sims, port=broker.port, format_=fmt) as publisher:
            publisher.publish_round(ts)
            publisher.publish_round(ts + 60)
        batch = await collect_readings(source, 6)
    assert len(batch) == 6
    expected = [twin.read(t) for t in (ts, ts + 60) for twin in twins]
    for row, want in enumerate(expected):
        assert batch.slot[row] == row % 3
        assert batch.col("v1")[row] == pytest.approx(want["v1"], abs=0.51)
        assert batch.col("p1")[row] == pytest.approx(want["p1"], abs=0.51)
        assert batch.col("i1")[row] == pytest.approx(want["i1"], abs=0.002)
        if fmt != "shelly":  # the em:0 status carries no timestamp: time of receipt
            assert batch.ts[row] == pytest.approx(ts + 60 * (row // 3), abs=0.01)
        three = FLEET[row % 3].phases == 3
        assert math.isnan(batch.col("v3")[row]) != three
    if fmt in ("shelly-rpc", "tasmota", "meterguard"):
        assert batch.col("e_imp")[3] > 0
    assert source.counters["malformed"] == 0
    t1 = status.get("T1")
    assert t1 is not None
    assert t1.readings == 2


async def test_garbage_is_counted_per_topic_and_the_rest_flows(broker: Broker) -> None:
    registry = MeterRegistry(FLEET)
    source = MqttSource(_settings(broker, "meterguard", dead_letters=3), registry, StatusBoard())
    async with source:
        await source.wait_connected(10)
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
            publisher.publish_round(1_767_225_600.0)
            publisher.publish_raw("meterguard/T1/reading", b"\x00\xffnot json")
            publisher.publish_raw("meterguard/T1/reading", b'{"ts": 1, "v1": "high"}')
            publisher.publish_raw("meterguard/T2/reading", b'{"v1": 230}')
            publisher.publish_raw("meterguard/NOPE/reading", b'{"ts": 1, "v1": 230}')
            publisher.publish_raw("meterguard/S1/reading", b"[1, 2]")
            publisher.publish_round(1_767_225_660.0)
        # The garbage came between the two rounds: it is counted by the time both are in.
        batch = await collect_readings(source, 6)
    assert len(batch) == 6
    # A meter not in the fleet is its own event, not a malformed payload.
    assert source.counters["malformed"] == 4
    assert source.malformed["meterguard/T1/reading"] == 2
    assert source.malformed["meterguard/NOPE/reading"] == 0
    assert source.counters["unknown_meter"] == 1
    # The store is bounded: the newest three, each with its reason.
    assert [d.topic for d in source.dead_letters] == [
        "meterguard/T2/reading",
        "meterguard/NOPE/reading",
        "meterguard/S1/reading",
    ]
    assert "ts missing" in source.dead_letters[0].reason
    assert "unknown meter" in source.dead_letters[1].reason


@PROTOCOLS
async def test_readings_published_while_away_and_across_a_broker_restart_arrive(
    broker: Broker, protocol: str
) -> None:
    registry = MeterRegistry(FLEET)
    settings = _settings(broker, "meterguard", protocol=protocol)
    # First run: the persistent session is created, then meterguard goes away.
    async with MqttSource(settings, registry, StatusBoard()) as first:
        await first.wait_connected(10)
    t0 = 1_767_225_600.0
    with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
        for k in range(100):
            publisher.publish_round(t0 + 60 * k)
    broker.restart()  # the queued QoS 1 readings must survive in the broker's persistence
    with MqttPublisher(_sims(1000), port=broker.port, format_="meterguard") as publisher:
        for k in range(100, 200):
            publisher.publish_round(t0 + 60 * k)
    source = MqttSource(settings, registry, StatusBoard())
    async with source:
        batch = await collect_readings(source, 600, within_s=20)
        marker = await _publish_marker_round(source, broker)
    assert len(batch) == 600
    assert set(marker.ts.tolist()) == {MARKER_TS}  # nothing came twice before the marker
    pairs = sorted(zip(batch.slot.tolist(), batch.ts.tolist(), strict=True))
    assert len(set(pairs)) == 600  # every reading once
    assert pairs[0] == (0, t0)
    assert pairs[-1] == (2, t0 + 60 * 199)


@PROTOCOLS
async def test_a_session_expiry_of_0_keeps_nothing_while_away(
    broker: Broker, protocol: str
) -> None:
    registry = MeterRegistry(FLEET)
    settings = _settings(broker, "meterguard", session_expiry_s=0, protocol=protocol)
    async with MqttSource(settings, registry, StatusBoard()) as first:
        await first.wait_connected(10)
    with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
        publisher.publish_round(1_767_225_600.0)  # nobody's session queues this
    source = MqttSource(settings, registry, StatusBoard())
    async with source:
        await source.wait_connected(10)
        marker = await _publish_marker_round(source, broker)
    assert set(marker.ts.tolist()) == {MARKER_TS}


@PROTOCOLS
async def test_source_reconnects_after_a_broker_restart(broker: Broker, protocol: str) -> None:
    registry = MeterRegistry(FLEET)
    settings = _settings(broker, "meterguard", backoff_max_s=2, protocol=protocol)
    source = MqttSource(settings, registry, StatusBoard())
    async with source:
        await source.wait_connected(10)
        await asyncio.to_thread(broker.restart)
        async with asyncio.timeout(15):
            while source.counters["connects"] < 2:
                await asyncio.sleep(0.05)
        assert source.counters["connects"] == 2
        await source.wait_connected(10)
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
            publisher.publish_round(1_767_225_600.0)
        batch = await collect_readings(source, 3)
    assert len(batch) == 3


@PROTOCOLS
async def test_shared_subscription_splits_the_stream_between_workers(
    broker: Broker, protocol: str
) -> None:
    registry = MeterRegistry(FLEET)
    shared = {"share_group": "mg", "protocol": protocol}
    a = MqttSource(
        _settings(broker, "meterguard", client_id="w1", **shared), registry, StatusBoard()
    )
    b = MqttSource(
        _settings(broker, "meterguard", client_id="w2", **shared), registry, StatusBoard()
    )
    async with a, b:
        await a.wait_connected(10)
        await b.wait_connected(10)  # both SUBACKs are in: the group has two members
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
            for k in range(20):
                publisher.publish_round(1_767_225_600.0 + 60 * k)
        got = {"a": 0, "b": 0}

        async def drain(name: str, source: MqttSource) -> None:
            async for batch in source.batches():
                got[name] += len(batch)

        tasks = [asyncio.create_task(drain("a", a)), asyncio.create_task(drain("b", b))]
        async with asyncio.timeout(10):
            while got["a"] + got["b"] < 60:
                await asyncio.sleep(0.02)
            # One more round as a marker: whatever came twice would arrive before it.
            with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
                publisher.publish_round(MARKER_TS)
            while got["a"] + got["b"] < 63:
                await asyncio.sleep(0.02)
        for task in tasks:
            task.cancel()
    assert got["a"] + got["b"] == 63
    assert got["a"] > 0
    assert got["b"] > 0


async def test_a_meter_silent_for_three_intervals_is_reported_offline(broker: Broker) -> None:
    registry = MeterRegistry(FLEET)
    status = StatusBoard()
    source = MqttSource(_settings(broker, "meterguard", interval_s=0.1), registry, status)
    async with source:
        await source.wait_connected(10)
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
            publisher.publish_round(1_767_225_600.0)
            await collect_readings(source, 3)
            now = time.time()
            assert source.check_silence(now) == 0
            assert source.check_silence(now + 0.25) == 0  # within three intervals of 0.1 s
            assert source.check_silence(now + 0.4) == 3
            t1 = status.get("T1")
            assert t1 is not None
            assert not t1.online
            assert t1.last_error is not None
            assert "silent" in t1.last_error
            publisher.publish_round(1_767_225_660.0)
            await collect_readings(source, 3)
    assert t1.online
    assert status.summary() == {"polled": 3, "online": 3, "failing": 0}


@PROTOCOLS
async def test_qos_2_subscription_goes_through_paho_exactly_once(
    broker: Broker, protocol: str
) -> None:
    registry = MeterRegistry(FLEET)
    settings = _settings(broker, "meterguard", qos=2, protocol=protocol)
    source = MqttSource(settings, registry, StatusBoard())
    async with source:
        await source.wait_connected(10)
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard", qos=2) as publisher:
            for k in range(5):
                publisher.publish_round(1_767_225_600.0 + 60 * k)
        batch = await collect_readings(source, 15)
        marker = await _publish_marker_round(source, broker, qos=2)
    assert len(batch) == 15
    assert set(marker.ts.tolist()) == {MARKER_TS}
    assert len(set(zip(batch.slot.tolist(), batch.ts.tolist(), strict=True))) == 15


async def test_receive_maximum_holds_the_broker_back_and_nothing_is_lost(broker: Broker) -> None:
    registry = MeterRegistry(FLEET)
    # MQTT 5, batch_max 10: Receive Maximum 20 unacknowledged messages in flight. (MQTT
    # 3.1.1 has no such property: there the broker's max_inflight_messages is the bound.)
    settings = _settings(broker, "meterguard", batch_max=10, protocol="5")
    source = MqttSource(settings, registry, StatusBoard())
    t0 = 1_767_225_600.0
    async with source:
        await source.wait_connected(10)
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
            for k in range(34):
                publisher.publish_round(t0 + 60 * k)
        async with asyncio.timeout(10):
            while source.inbox_size < 20:
                await asyncio.sleep(0.02)
        # The broker holds the other 82 until we acknowledge: a window in which none comes.
        await asyncio.sleep(0.3)
        assert source.inbox_size == 20
        assert source.counters["inbox_full"] == 0  # 20 < the cap of 40: the broker held back
        # Mosquitto 2.0 overshoots Receive Maximum once a batch of acknowledgements comes
        # in; the capped inbox (40) then holds the client thread, and TCP the broker.
        batch = await collect_readings(source, 102)
    assert len(batch) == 102
    pairs = set(zip(batch.slot.tolist(), batch.ts.tolist(), strict=True))
    assert pairs == {(s, t0 + 60 * k) for k in range(34) for s in range(3)}


async def test_the_inbox_has_a_hard_cap_counted_and_logged(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collector.mqtt")
    registry = MeterRegistry(FLEET)
    # QoS 0 has no flow control: the cap (4 x batch_max = 40 messages) is the only bound.
    settings = _settings(broker, "meterguard", batch_max=10, qos=0)
    source = MqttSource(settings, registry, StatusBoard())
    t0 = 1_767_225_600.0
    async with source:
        await source.wait_connected(10)
        with MqttPublisher(_sims(), port=broker.port, format_="meterguard", qos=0) as publisher:
            for k in range(34):
                publisher.publish_round(t0 + 60 * k)
        async with asyncio.timeout(10):
            while source.counters["inbox_full"] < 1:
                await asyncio.sleep(0.02)
        # The client thread waits at the cap: the inbox never holds more.
        assert source.inbox_size == 40
        batch = await collect_readings(source, 102)
    # Nothing was dropped: the rest waited in the socket until there was room.
    assert len(batch) == 102
    pairs = set(zip(batch.slot.tolist(), batch.ts.tolist(), strict=True))
    assert pairs == {(s, t0 + 60 * k) for k in range(34) for s in range(3)}
    full = [r for r in caplog.records if "inbox full" in r.getMessage()]
    resumed = [r for r in caplog.records if "reading from the broker again" in r.getMessage()]
    assert len(full) >= 1
    assert len(resumed) == len(full)  # each pause logged once, and its end


def test_the_publisher_raises_when_the_broker_never_acknowledges() -> None:
    # A "broker" that accepts the connection (CONNACK) and then never sends a PUBACK.
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
            while conn.recv(1024):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with MqttPublisher(_sims(), port=port, format_="meterguard") as publisher:
            publisher.ack_timeout_s = 0.5
            with pytest.raises(PublishTimeoutError):
                publisher.publish_raw("meterguard/T1/reading", b"{}")
            assert publisher.published == 0
    finally:
        listener.close()


async def _stored_round(source: MqttSource, broker: Broker, ts: float) -> ReadingBatch:
    """Publish a round, take it through deliveries() and acknowledge it as stored."""
    with MqttPublisher(_sims(), port=broker.port, format_="meterguard") as publisher:
        publisher.publish_round(ts)
    got: list[ReadingBatch] = []
    async with asyncio.timeout(10):
        async for delivery in source.deliveries():
            got.append(delivery.batch)
            assert delivery.on_committed is not None
            delivery.on_committed()
            if sum(len(b) for b in got) >= 3:
                break
    return ReadingBatch.concat(got)


@PROTOCOLS
async def test_a_source_entered_again_after_it_exited_reads_on(
    broker: Broker, protocol: str
) -> None:
    # What the service does when it restarts a failed source: the same object again.
    registry = MeterRegistry(FLEET)
    settings = _settings(broker, "meterguard", protocol=protocol)
    source = MqttSource(settings, registry, StatusBoard())
    async with source:
        await source.wait_connected(10)
        first = await _stored_round(source, broker, MARKER_TS)
    assert source.health.reachable is True
    async with source:
        await source.wait_connected(10)
        second = await _stored_round(source, broker, MARKER_TS + 60)
    assert set(first.ts.tolist()) == {MARKER_TS}
    assert set(second.ts.tolist()) == {MARKER_TS + 60}  # nothing of the first session again
    assert source.counters["connects"] == 2
