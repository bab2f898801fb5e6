"""Two service processes share three Modbus gateways through leases in PostgreSQL.

The first takes every gateway, the second stands by; the first is killed (SIGKILL, no
clean stop) and the second polls every meter again within 30 s. The simulated gateways
log which connection asked for which meter when, so "never two pollers at once" is read
off the gateways themselves, not off either process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import httpx

from simulators.fleet import demo_fleet
from simulators.meter import SimulatedMeter
from simulators.modbus_gateway import ModbusGateway
from tests.conftest import free_port
from tests.stores.conftest import pg_database, pg_url  # noqa: F401 (a fixture)

GATEWAYS = 3
METERS_PER_GATEWAY = 4
TTL_S = 3.0


def _config(
    path: Path, api_port: int, ports: list[int], alert_db: str, fleet: list[SimulatedMeter]
) -> Path:
    lines = [
        'log_level = "INFO"',
        "[storage]",
        f'data_dir = "{path / "data"}"',
        f'alert_db_url = "{alert_db}"',
        "[api]",
        f"port = {api_port}",
        'anonymous_role = "viewer"',
        "[leases]",
        "enabled = true",
        f"ttl_s = {TTL_S}",
    ]
    for sim in fleet:
        meter = sim.meter
        lines += [
            "[[meters]]",
            f'id = "{meter.id}"',
            f'service = "{meter.service}"',
            f"nominal_v = {meter.nominal_v}",
        ]
    for g, port in enumerate(ports):
        lines += [
            "[[sources]]",
            'type = "modbus"',
            f'name = "gw{g + 1}"',
            f"port = {port}",
            "interval_s = 0.5",
            "timeout_s = 1.0",
        ]
        for u in range(METERS_PER_GATEWAY):
            sim = fleet[g * METERS_PER_GATEWAY + u]
            lines += [
                "[[sources.devices]]",
                f'meter = "{sim.meter.id}"',
                f"unit = {u + 1}",
            ]
    path.mkdir(parents=True, exist_ok=True)
    config = path / "meterguard.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "run", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def _states(api_port: int) -> dict[str, str]:
    """Return each source's state as the process's /api/health reports it."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        with contextlib.suppress(httpx.TransportError):
            reply = await client.get(f"http://127.0.0.1:{api_port}/api/health")
            return {s["name"]: s["state"] for s in reply.json()["sources"]}
    return {}


async def _until(within_s: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Wait until check() is true; return the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < within_s:
        if await check():
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    raise AssertionError(f"not reached within {within_s} s")


def _peers_overlap(log: Iterable[tuple[int, int, float]]) -> list[tuple[int, int]]:
    """Return pairs of connections whose requests interleave on one gateway."""
    spans: dict[int, tuple[float, float]] = {}
    for peer, _unit, at in log:
        first, _last = spans.get(peer, (at, at))
        spans[peer] = (first, at)
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    return [
        (a, b)
        for (a, (_, a_last)), (b, (b_first, _)) in itertools.pairwise(ordered)
        if b_first <= a_last
    ]


async def test_a_killed_pollers_gateways_are_taken_over_and_never_polled_twice(
    tmp_path: Path,
    pg_database: str,  # noqa: F811
) -> None:
    fleet, _ = demo_fleet(GATEWAYS * METERS_PER_GATEWAY, seed=5, thieves=0, solar=0)
    ports = [free_port() for _ in range(GATEWAYS)]
    alert_db = pg_url(pg_database, pg_database.rsplit("/", 1)[1])
    api_ports = [free_port(), free_port()]
    configs = [
        _config(tmp_path / name, api_ports[i], ports, alert_db, fleet)
        for i, name in enumerate(("first", "second"))
    ]
    gateways = [
        ModbusGateway(
            [
                (u + 1, sim)
                for u, sim in enumerate(
                    fleet[g * METERS_PER_GATEWAY : (g + 1) * METERS_PER_GATEWAY]
                )
            ],
            port=port,
            clock=time.time,
        )
        for g, port in enumerate(ports)
    ]
    names = {f"gw{g + 1}" for g in range(GATEWAYS)}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with gateways[0], gateways[1], gateways[2]:
            processes.append(_start(configs[0], tmp_path / "first.log"))

            async def first_polls_all() -> bool:
                return await _states(api_ports[0]) == dict.fromkeys(names, "running")

            await _until(60, first_polls_all)
            processes.append(_start(configs[1], tmp_path / "second.log"))

            async def second_stands_by() -> bool:
                return await _states(api_ports[1]) == dict.fromkeys(names, "standby")

            await _until(60, second_stands_by)
            await asyncio.sleep(2 * TTL_S)  # renewals go on; the standby must not step in
            assert await _states(api_ports[1]) == dict.fromkeys(names, "standby")

            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait(10)
            # Requests the dead process sent before it died may still be read after this:
            # what counts as polled again is what a connection not seen before asks.
            seen = [{peer for peer, _unit, _at in gw.request_log} for gw in gateways]

            def polled_by_others(g: int) -> set[int]:
                return {unit for peer, unit, _at in gateways[g].request_log if peer not in seen[g]}

            async def every_meter_polled_again() -> bool:
                units = set(range(1, METERS_PER_GATEWAY + 1))
                return all(polled_by_others(g) == units for g in range(GATEWAYS))

            takeover_s = await _until(30, every_meter_polled_again)
            assert await _states(api_ports[1]) == dict.fromkeys(names, "running")
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
            proc.kill()
    # The dead process had renewed its leases at most a third of their time before it
    # died, so they had two thirds left at least: nobody may poll its gateways sooner.
    print(f"takeover within {takeover_s:.1f} s")
    assert TTL_S * 2 / 3 - 0.2 < takeover_s <= 30
    for gateway in gateways:
        peers = {peer for peer, _unit, _at in gateway.request_log}
        assert len(peers) >= 2, "both processes polled each gateway in turn"
        assert _peers_overlap(gateway.request_log) == []
    assert processes[1].returncode == 0, (tmp_path / "second.log").read_text()
