"""Simulator -> Modbus over TCP -> collector -> engine -> store -> HTTP API, all real."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from meterguard.runtime import Runtime
from service.demo import demo_settings
from service.supervisor import Service
from simulators.fleet import demo_fleet
from simulators.modbus_gateway import ModbusGateway
from tests.conftest import free_port


async def _wait_for_alerts(url: str, want: int, within_s: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + within_s
    items: list[dict[str, object]] = []
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                items = (await client.get(url)).json()["items"]
                if len(items) >= want:
                    return items
            await asyncio.sleep(0.3)
    return items


async def test_reversed_meters_are_alerted_and_honest_ones_are_not(tmp_path: Path) -> None:
    fleet, truth = demo_fleet(24, seed=3, thieves=2, solar=3)
    ports = [free_port(), free_port()]
    api_port = free_port()
    settings = demo_settings(fleet, ports, tmp_path, api_port, interval_s=0.5)
    settings.detectors["reversal"]["raise_after_s"] = 4
    runtime = Runtime.open(settings)
    gateways = [
        ModbusGateway(
            [(u + 1, sim) for u, sim in enumerate(fleet[g * 12 : (g + 1) * 12])],
            port=port,
            clock=lambda: 12 * 3600.0 + time.time(),
        )
        for g, port in enumerate(ports)
    ]
    try:
        async with gateways[0], gateways[1]:
            service = Service(runtime)
            task = asyncio.create_task(service.run())
            items = await _wait_for_alerts(f"http://127.0.0.1:{api_port}/api/alerts", 2, 30)
            await asyncio.sleep(2.0)  # long enough for a false alarm to show up too
            async with httpx.AsyncClient() as client:
                items = (await client.get(f"http://127.0.0.1:{api_port}/api/alerts")).json()[
                    "items"
                ]
                meters = (await client.get(f"http://127.0.0.1:{api_port}/api/meters")).json()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await runtime.close()
    assert {(a["meter"], a["kind"], a["phase"]) for a in items} == {
        (t.meter, "reversal", t.phase) for t in truth
    }
    assert all(m["collector"]["online"] for m in meters["items"])
    # The readings went to the series store too.
    reopened = Runtime.open(settings)
    try:
        stored = await reopened.series.query(truth[0].meter, 0, time.time() + 10, ["p1"])
        assert len(stored.ts) >= 5
    finally:
        await reopened.close()


@pytest.mark.slow  # the demo as shipped: its reversals take some 25 s of real time
def test_demo_command_shows_a_reversal_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "demo",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        items = asyncio.run(_wait_for_alerts(f"http://127.0.0.1:{port}/api/alerts", 3, 60))
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    thieves = {
        line.split()[0]
        for line in output.split("Reversed CTs injected at: ")[1].split(";")[0].split(", ")
    }
    assert {a["meter"] for a in items} == thieves
    assert all(a["kind"] == "reversal" for a in items)
    assert "Traceback" not in output
