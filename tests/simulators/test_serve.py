"""The fleet served live: Modbus gateways and MQTT publishing, read by independent clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.live import LiveFleet
from simulators.physics import FleetModel
from simulators.serve import SimClock, plan_gateways, serve_modbus, serve_mqtt, sources_toml
from tests.collector.conftest import Broker
from tests.conftest import free_port
from tests.simulators.helpers import INCIDENT_START, incident, pick, scenario


def _float(regs: Sequence[int], offset: int) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", regs[offset], regs[offset + 1]))[0]
    return value


def _fleet_with_a_silenced_meter() -> tuple[LiveFleet, str]:
    quiet = pick(FleetModel(scenario()), three=False)
    return LiveFleet(FleetModel(scenario([incident("silenced", quiet)]))), quiet


async def test_modbus_gateways_serve_the_fleet_and_a_silenced_meter_does_not_answer() -> None:
    fleet, quiet = _fleet_with_a_silenced_meter()
    plans = plan_gateways(fleet, free_port(), per_gateway=len(fleet.meters))
    plan = plans[0]
    clock = SimClock(INCIDENT_START + 600.0, speed=60.0)
    ready = asyncio.Event()
    task = asyncio.create_task(serve_modbus([plan], clock, request_delay_s=0.0, ready=ready.set))
    # serve_modbus calls ready() and goes straight into the first presence pass, which
    # sets every unit's fault before it first yields: once ready is seen, it has run.
    await asyncio.wait_for(ready.wait(), 5)
    units = dict((lm.meter.id, u) for u, lm in plan.units)
    client = AsyncModbusTcpClient("127.0.0.1", port=plan.port, timeout=0.5, retries=0)
    assert await client.connect()
    try:
        first_e = None
        for _ in range(2):
            unit, lm = plan.units[1]
            t = clock()
            reply = await client.read_input_registers(0, count=0x4C, device_id=unit)
            v, i, p, q = (_float(reply.registers, a) for a in (0x00, 0x06, 0x0C, 0x18))
            assert math.isclose(math.hypot(p, q), v * i, rel_tol=1e-3, abs_tol=0.5)
            assert abs(v - lm.read(t)["v1"]) < 5.0
            e = _float(reply.registers, 0x48)
            assert first_e is None or e >= first_e
            first_e = e
            async with asyncio.timeout(10):  # one simulated minute later (1 s at x60)
                while clock() < t + 60.0:
                    await asyncio.sleep(0.05)
        try:
            await client.read_input_registers(0, count=0x4C, device_id=units[quiet])
            answered = True
        except (TimeoutError, ModbusException):
            answered = False
        assert not answered
    finally:
        client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    text = sources_toml(plans, "127.0.0.1", 5.0)
    assert f'meter = "{quiet}"' in text
    assert f"port = {plan.port}" in text


@pytest.mark.mqtt
def test_mqtt_publishes_every_answering_meter_at_qos1(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    try:
        fleet, quiet = _fleet_with_a_silenced_meter()
        got: list[tuple[str, dict[str, Any]]] = []
        subscribed = threading.Event()
        received = threading.Condition()

        def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
            with received:
                got.append((msg.topic, json.loads(msg.payload)))
                received.notify_all()

        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-sub")
        sub.on_connect = lambda c, *_: c.subscribe("meterguard/#", qos=1)
        sub.on_subscribe = lambda *_: subscribed.set()
        sub.on_message = on_message
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        try:
            assert subscribed.wait(5)
            clock = SimClock(INCIDENT_START + 600.0, speed=60.0)
            sent = serve_mqtt(fleet, clock, port=broker.port, interval_s=0.2, rounds=2)
            with received:
                received.wait_for(lambda: len(got) >= sent, timeout=10)
        finally:
            sub.disconnect()
            sub.loop_stop()
    finally:
        broker.stop()
    assert sent == 2 * (len(fleet.meters) - 1)
    assert len(got) == sent
    meters = {payload["meter"] for _, payload in got}
    assert quiet not in meters
    for topic, payload in got:
        assert topic == f"meterguard/{payload['meter']}/reading"
        s = math.hypot(payload["p1"], payload["q1"])
        assert math.isclose(s, payload["v1"] * payload["i1"], rel_tol=1e-3, abs_tol=0.5)
