"""`meterguard demo`: a simulated fleet on Modbus gateways, the service and the API, together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from collector.modbus import ModbusDeviceSettings, ModbusSourceSettings
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from service.supervisor import Service, stop_on_signals
from simulators.fleet import GroundTruth, live_demo_fleet
from simulators.modbus_gateway import MeterModel, ModbusGateway

log = logging.getLogger(__name__)

METERS_PER_GATEWAY = 12
#: The simulated day starts at 10:00 so that the solar customers export during the demo.
SIM_START_S = 10 * 3600.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_settings(
    fleet: Sequence[MeterModel],
    ports: list[int],
    data_dir: Path,
    api_port: int,
    interval_s: float = 2.0,
) -> Settings:
    """Return settings that poll the demo gateways every `interval_s` and alert quickly."""
    sources = []
    for g, port in enumerate(ports):
        members = fleet[g * METERS_PER_GATEWAY : (g + 1) * METERS_PER_GATEWAY]
        sources.append(
            ModbusSourceSettings(
                name=f"gw{g + 1}",
                host="127.0.0.1",
                port=port,
                interval_s=interval_s,
                timeout_s=1.0,
                devices=[
                    ModbusDeviceSettings(
                        meter=sim.meter.id,
                        unit=u + 1,
                        profile="sdm630" if sim.meter.phases == 3 else "sdm120",
                    )
                    for u, sim in enumerate(members)
                ],
            )
        )
    return Settings(
        storage=StorageSettings(data_dir=data_dir),
        # Anyone on this machine may look; changing things takes one of the printed tokens.
        api=ApiSettings(host="127.0.0.1", port=api_port, anonymous_role="viewer"),
        meters=[sim.meter for sim in fleet],
        sources=sources,
        # Short persistence so that a visitor sees alerts within the first minute.
        detectors={"reversal": {"raise_after_s": 20, "clear_after_s": 60}},
    )


def _gateways(fleet: Sequence[MeterModel], ports: list[int]) -> list[ModbusGateway]:
    start = time.time()

    def clock() -> float:
        return SIM_START_S + time.time() - start

    return [
        ModbusGateway(
            [
                (u + 1, sim)
                for u, sim in enumerate(
                    fleet[g * METERS_PER_GATEWAY : (g + 1) * METERS_PER_GATEWAY]
                )
            ],
            port=port,
            request_delay_s=0.005,
            clock=clock,
        )
        for g, port in enumerate(ports)
    ]


def _banner(settings: Settings, truth: list[GroundTruth], n: int) -> str:
    base = f"http://{settings.api.host}:{settings.api.port}"
    thieves = ", ".join(f"{t.meter} (phase {t.phase})" for t in truth)
    return (
        f"\nmeterguard demo: {n} simulated meters on {len(settings.sources)} Modbus gateways\n"
        f"  alert board   {base}/\n"
        f"  alerts (JSON) {base}/api/alerts\n"
        f"  meters        {base}/api/meters\n"
        f"  API docs      {base}/docs\n"
        f"  data          {settings.storage.data_dir}\n"
        f"Reversed CTs injected at: {thieves}; expect their alerts within ~30 s.\n"
        f"Press Ctrl-C to stop.\n"
    )


async def run_demo(data_dir: Path, api_port: int = 8000, n_meters: int = 36, seed: int = 7) -> None:
    """Run the simulated fleet and the whole service until cancelled."""
    fleet, truth = live_demo_fleet(n_meters, seed=seed)
    # The transformers' feeder (check) meters come on top of the customers.
    n_gateways = -(-len(fleet) // METERS_PER_GATEWAY)
    ports = [free_port() for _ in range(n_gateways)]
    settings = demo_settings(fleet, ports, data_dir, api_port)
    runtime = Runtime.open(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for gateway in _gateways(fleet, ports):
                await stack.enter_async_context(gateway)
            print(_banner(settings, truth, len(fleet)), flush=True)
            print(await _demo_users(runtime), flush=True)
            service = Service(runtime)
            stop_on_signals(service)
            await service.run()
    finally:
        await runtime.close()


DEMO_USERS = (("operator", "operator"), ("crew1", "crew"), ("admin", "admin"))


async def _demo_users(runtime: Runtime) -> str:
    """Create the demo's users on a fresh data folder; return passwords and tokens to print."""
    lines = [
        "Users (sign in on the pages with name and password, or send a token as"
        " 'Authorization: Bearer <token>' to act on alerts):"
    ]
    for name, role in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        try:
            _, token = await runtime.users.create_user(name, role, password=password)
        except Exception as exc:  # a reused data folder already has them
            log.info("demo user %s not created: %s", name, exc)
            lines.append(f"  {name:<9} ({role}): created in an earlier run of this data folder")
            continue
        lines.append(f"  {name:<9} ({role}): password {password}  token {token}")
    return "\n".join(lines)


def main(data_dir: Path, api_port: int, n_meters: int, seed: int) -> None:
    """Run the demo in a fresh event loop; Ctrl-C stops it cleanly."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(data_dir, api_port, n_meters, seed))
