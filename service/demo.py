"""`meterguard demo`: a simulated fleet with a story of thefts, the service and the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from collector.modbus import ModbusDeviceSettings, ModbusSourceSettings
from meterguard.model import Meter
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, EngineSettings, Settings, StorageSettings
from service.demo_feed import AfterHistory, HeadEndFeed
from service.supervisor import Service, build_sources, stop_on_signals
from simulators.modbus_gateway import Fault, MeterModel, ModbusGateway
from simulators.showcase import Showcase, build_showcase

log = logging.getLogger(__name__)

METERS_PER_GATEWAY = 12


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Persistence of the physics kinds in the demo: long enough to show that a condition must
#: hold, short enough that a visitor sees each within a minute of its injection.
DEMO_RAISE_AFTER_S = 20.0
#: A meter silent this long is raised in the demo (a head-end waits 15 min or more).
DEMO_SILENCE_S = 30.0


def demo_settings(
    fleet: Sequence[MeterModel],
    ports: list[int],
    data_dir: Path,
    api_port: int,
    interval_s: float = 2.0,
    others: Sequence[Meter] = (),
) -> Settings:
    """Return settings that poll the demo gateways every `interval_s` and alert quickly.

    `fleet` is served by the gateways, `METERS_PER_GATEWAY` to each; `others` are meters
    read another way (the demo's head-end).
    """
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
    quick = {"raise_after_s": DEMO_RAISE_AFTER_S}
    return Settings(
        storage=StorageSettings(data_dir=data_dir),
        # Anyone on this machine may look; changing things takes one of the printed tokens.
        api=ApiSettings(host="127.0.0.1", port=api_port, anonymous_role="viewer"),
        meters=[sim.meter for sim in fleet] + list(others),
        sources=sources,
        # Silences are judged every 10 s of data time, not every 5 min.
        engine=EngineSettings(tick_s=10.0),
        # Short persistence so that a visitor sees alerts within the first minute.
        detectors={
            "reversal": {**quick, "clear_after_s": 60},
            "bypass": dict(quick),
            "voltage_loss": dict(quick),
            "phase_shift": dict(quick),
            "comms_loss": {"silence_s": DEMO_SILENCE_S, "missed_readings": 2},
        },
    )


def _gateways(
    fleet: Sequence[MeterModel], ports: list[int], clock: Callable[[], float]
) -> list[ModbusGateway]:
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


def _banner(settings: Settings, n: int, head_end: int) -> str:
    base = f"http://{settings.api.host}:{settings.api.port}"
    return (
        f"\nmeterguard demo: {n} simulated meters, {n - head_end} on "
        f"{len(settings.sources)} Modbus gateways and {head_end} read through a head-end\n"
        f"  alert board   {base}/\n"
        f"  alerts (JSON) {base}/api/alerts\n"
        f"  meters        {base}/api/meters\n"
        f"  API docs      {base}/docs\n"
        f"  data          {settings.storage.data_dir}\n"
        f"Press Ctrl-C to stop.\n"
    )


def _clock_label(at_s: float, live_start_s: float) -> str:
    ahead = at_s - live_start_s
    if ahead >= 0:
        return f"+{int(ahead) // 60}:{int(ahead) % 60:02d}"
    return f"{-ahead / 3600.0:.0f} h ago"


def story_lines(show: Showcase) -> list[str]:
    """Return the timeline as printed before the demo goes live: one line per act."""
    lines = ["What happens (each should reach the board; watch it):"]
    for act in show.acts:
        phase = f" phase {act.phase}" if act.phase else ""
        lines.append(
            f"  {_clock_label(act.at_s, show.live_start_s):>9}  {act.kind:<16} "
            f"{act.meter}{phase}: {act.story}"
        )
    return lines


async def _play(show: Showcase, gateways: dict[str, tuple[ModbusGateway, int]]) -> None:
    """Announce each live act as it begins; silence a meter at its gateway when due."""
    for act in show.acts:
        if act.at_s < show.live_start_s:
            continue
        await asyncio.sleep(max(0.0, act.at_s - time.time()))
        if act.gateway_silence and act.meter in gateways:
            gateway, unit = gateways[act.meter]
            gateway.set_fault(unit, Fault.SILENT)
        phase = f" phase {act.phase}" if act.phase else ""
        print(f"injected: {act.kind} at {act.meter}{phase}: {act.story}", flush=True)


async def run_demo(
    data_dir: Path, api_port: int = 8000, n_meters: int = 36, seed: int = 7, pace_s: float = 40.0
) -> None:
    """Run the simulated fleet, its history and story, and the whole service until cancelled."""
    show = build_showcase(time.time() + 5.0, customers=n_meters, seed=seed, pace_s=pace_s)
    head_end = set(show.head_end)
    meters = [m for m in show.fleet.meters if m.meter.id not in head_end]
    n_gateways = -(-len(meters) // METERS_PER_GATEWAY)
    ports = [free_port() for _ in range(n_gateways)]
    others = [m.meter for m in show.fleet.meters if m.meter.id in head_end]
    settings = demo_settings(meters, ports, data_dir, api_port, others=others)
    runtime = Runtime.open(settings)
    try:
        async with contextlib.AsyncExitStack() as stack:
            gateways = _gateways(meters, ports, time.time)
            for gateway in gateways:
                await stack.enter_async_context(gateway)
            print(_banner(settings, len(show.fleet.meters), len(head_end)), flush=True)
            print(await _demo_users(runtime), flush=True)
            print("\n".join(story_lines(show)), flush=True)
            feed = HeadEndFeed(show, runtime.registry)
            sources = [feed] + [AfterHistory(s, feed.history_done) for s in build_sources(runtime)]
            service = Service(runtime, sources)
            stop_on_signals(service)
            units = {
                sim.meter.id: (gateways[g // METERS_PER_GATEWAY], g % METERS_PER_GATEWAY + 1)
                for g, sim in enumerate(meters)
            }
            story = asyncio.create_task(_play(show, units))
            try:
                await service.run()
            finally:
                story.cancel()
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


def main(data_dir: Path, api_port: int, n_meters: int, seed: int, pace_s: float = 40.0) -> None:
    """Run the demo in a fresh event loop; Ctrl-C stops it cleanly."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(data_dir, api_port, n_meters, seed, pace_s))
