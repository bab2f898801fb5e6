"""Serve a live fleet over the protocol front-ends, simulated time running faster than wall time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from simulators.live import LiveFleet, LiveMeter
from simulators.modbus_gateway import Fault, ModbusGateway
from simulators.mqtt_publisher import MqttPublisher


class SimClock:
    """Simulated time: `start_s` at construction, then `speed` simulated seconds per second.

    Speed 0 freezes the time (tests compare a front-end's answer with the physics at it).
    """

    def __init__(self, start_s: float, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError("speed must not be negative")
        self.start_s = start_s
        self.speed = speed
        self._wall0 = time.monotonic()

    def __call__(self) -> float:
        return self.start_s + (time.monotonic() - self._wall0) * self.speed


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """One simulated gateway: its port and the meters on its bus by unit id."""

    name: str
    port: int
    units: list[tuple[int, LiveMeter]]


def plan_gateways(fleet: LiveFleet, first_port: int, per_gateway: int) -> list[GatewayPlan]:
    """Put the fleet's meters on gateways of `per_gateway` units, on consecutive ports."""
    plans = []
    for g, start in enumerate(range(0, len(fleet.meters), per_gateway)):
        members = fleet.meters[start : start + per_gateway]
        plans.append(
            GatewayPlan(f"gw{g + 1}", first_port + g, [(u + 1, m) for u, m in enumerate(members)])
        )
    return plans


def sources_toml(plans: list[GatewayPlan], host: str, interval_s: float) -> str:
    """Return `[[sources]]` entries that make `meterguard run` poll the simulated gateways."""
    lines: list[str] = []
    for plan in plans:
        lines += [
            "[[sources]]",
            'type = "modbus"',
            f'name = "{plan.name}"',
            f'host = "{host}"',
            f"port = {plan.port}",
            f"interval_s = {interval_s:g}",
            "",
        ]
        for unit, lm in plan.units:
            profile = "sdm630" if lm.meter.phases == 3 else "sdm120"
            lines += [
                "[[sources.devices]]",
                f'meter = "{lm.meter.id}"',
                f"unit = {unit}",
                f'profile = "{profile}"',
                "",
            ]
    return "\n".join(lines)


async def _follow_presence(
    gateways: list[tuple[ModbusGateway, GatewayPlan]], clock: Callable[[], float]
) -> None:
    """Keep silenced meters and meters on a dead transformer from answering."""
    while True:
        t = clock()
        for gateway, plan in gateways:
            for unit, lm in plan.units:
                gateway.set_fault(unit, Fault.NONE if lm.online(t) else Fault.SILENT)
        await asyncio.sleep(0.5)


async def serve_modbus(
    plans: list[GatewayPlan],
    clock: Callable[[], float],
    *,
    host: str = "127.0.0.1",
    request_delay_s: float = 0.005,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve every planned gateway until cancelled."""
    gateways = [
        (ModbusGateway(p.units, host=host, port=p.port, request_delay_s=request_delay_s,
                       clock=clock), p)
        for p in plans
    ]  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        for gateway, _ in gateways:
            await stack.enter_async_context(gateway)
        if ready is not None:
            ready()
        await _follow_presence(gateways, clock)


def serve_mqtt(
    fleet: LiveFleet,
    clock: Callable[[], float],
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    format_: str = "meterguard",
    interval_s: float = 1.0,
    stop: threading.Event | None = None,
    rounds: int | None = None,
) -> int:
    """Publish a reading of every answering meter every `interval_s` wall seconds at QoS 1.

    Returns the number of messages published once `stop` is set or `rounds` are done.
    """
    publisher = MqttPublisher(fleet.meters, host=host, port=port, format_=format_, clock=clock)
    stop = stop or threading.Event()
    done = 0
    try:
        while not stop.is_set() and (rounds is None or done < rounds):
            began = time.monotonic()
            t = clock()
            publisher.meters = [m for m in fleet.meters if m.online(t)]
            publisher.publish_round(t)
            done += 1
            stop.wait(max(0.0, interval_s - (time.monotonic() - began)))
    finally:
        publisher.close()
    return publisher.published
