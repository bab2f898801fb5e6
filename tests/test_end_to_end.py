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
from playwright.async_api import async_playwright, expect

from meterguard.runtime import Runtime
from service.demo import demo_settings
from service.supervisor import Service
from simulators.fleet import demo_fleet
from simulators.modbus_gateway import ModbusGateway
from tests.api.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import free_port


async def _wait_for_alerts(
    url: str, want: int, within_s: float, kinds: int = 0
) -> list[dict[str, object]]:
    """Poll the alert list until it has `want` alerts of at least `kinds` kinds."""
    deadline = time.monotonic() + within_s
    items: list[dict[str, object]] = []
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                items = (await client.get(url)).json()["items"]
                if len(items) >= want and len({a["kind"] for a in items}) >= kinds:
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


#: How the board names each kind of the demo's story, in English.
BOARD_KIND = {
    "consumption_drop": "consumption drop",
    "energy_balance": "energy balance",
    "reversal": "reversal",
    "bypass": "bypass",
    "voltage_loss": "voltage loss",
    "tamper": "tamper",
    "comms_loss": "comms loss",
}


@pytest.mark.slow  # the demo as shipped: its story takes some 90 s of real time
@pytest.mark.browser
@pytest.mark.apart  # the demo's own servers; its story waits on real time
def test_demo_command_shows_every_kind_of_its_story_on_the_board(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:  # a file, not a pipe nobody reads while the story plays
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "service.cli", "demo", "--port", str(port),
                "--data-dir", str(tmp_path / "data"), "--pace", "5",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/alerts"
    try:
        # Seven acts: two in the history, five live 5 s apart; the silence takes longest.
        items = asyncio.run(_wait_for_alerts(url, 7, 150, kinds=7))
        showing = _open(items)
        assert {kind for kind, _ in showing} >= set(BOARD_KIND), showing
        asyncio.run(_board_shows(f"http://127.0.0.1:{port}/", showing))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    output = log.read_text(errors="replace")
    assert proc.returncode == 0, output
    story = output.split("What happens")[1].split("history of")[0].splitlines()[1:]
    acts = {_act(line) for line in story if line.startswith("  ")}  # not the log lines
    assert {kind for kind, _ in acts} == {
        "consumption_drop", "energy_balance", "reversal", "bypass", "voltage_loss", "tamper",
        "comms_loss",
    }  # fmt: skip
    raised = {(str(a["kind"]), str(a["meter"])) for a in items}
    assert acts <= raised, output
    # Nothing on a meter the story left alone; a transformer's check meter may see the
    # energy a live theft takes past its customer meter.
    story_meters = {meter for _, meter in acts}
    others = {(kind, meter) for kind, meter in raised if meter not in story_meters}
    assert all(kind == "energy_balance" and meter.endswith("-FDR") for kind, meter in others)
    for kind, meter in acts:
        if kind not in ("consumption_drop", "energy_balance"):
            assert f"injected: {kind} at {meter}" in output
    assert "Traceback" not in output


async def _board_shows(url: str, alerts: set[tuple[str, str]]) -> None:
    """Open the board in headless Chromium, as an operator would, and find every alert."""
    assert CHROMIUM, "Debian's chromium package is required (make test installs it)"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(url)
        for kind, meter in alerts:
            row = page.locator("#alerts tbody tr", has_text=meter).filter(has_text=BOARD_KIND[kind])
            await expect(row.first).to_be_visible(timeout=10_000)
        await browser.close()


def _open(items: list[dict[str, object]]) -> set[tuple[str, str]]:
    """Return (kind, meter) of the open alerts: the rows the board shows by default."""
    return {(str(a["kind"]), str(a["meter"])) for a in items if a["end"] is None}


def _act(line: str) -> tuple[str, str]:
    """Return (kind, meter) of a line of the demo's printed story."""
    words = line.split()
    at = 3 if words[1] == "h" else 1  # "60 h ago  kind meter: ..." or "+0:05  kind meter ..."
    return words[at], words[at + 1].rstrip(":")
