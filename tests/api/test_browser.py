"""The web pages in headless Chromium (Debian's package), driven by Playwright."""

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from meterguard.demo import demo_settings
from meterguard.runtime import Runtime
from meterguard.service import Service
from simulators.fleet import demo_fleet
from simulators.modbus_gateway import ModbusGateway
from tests.conftest import free_port

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM, "Debian's chromium package is required (.ci/run installs it)"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def live_service(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A 12-meter fleet, one reversed CT raised after 6 s, the service and API on 127.0.0.1."""
    fleet, truth = demo_fleet(12, seed=5, thieves=1, solar=1)
    port, api_port = free_port(), free_port()
    settings = demo_settings(fleet, [port], tmp_path, api_port)
    settings.detectors["reversal"]["raise_after_s"] = 6
    settings.sources[0].interval_s = 0.5
    runtime = Runtime.open(settings)
    gateway = ModbusGateway(
        [(u + 1, s) for u, s in enumerate(fleet)],
        port=port,
        clock=lambda: 12 * 3600.0 + time.time(),
    )
    async with gateway:
        task = asyncio.create_task(Service(runtime).run())
        try:
            yield f"http://127.0.0.1:{api_port}", truth[0].meter
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runtime.close()


async def test_alert_appears_live_and_pages_draw_plots(
    browser: Browser, live_service: tuple[str, str], tmp_path: Path
) -> None:
    base, thief = live_service
    page = await browser.new_page()
    for _ in range(50):  # the API comes up with the service
        with contextlib.suppress(Exception):
            await page.goto(base + "/")
            break
        await asyncio.sleep(0.2)
    await expect(page.locator("#alerts tbody")).to_contain_text("no alerts")
    await expect(page.locator("#live")).to_have_class("live on")
    # The alert arrives through the stream: the page is never reloaded.
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row).to_be_visible(timeout=20_000)
    await expect(row).to_contain_text("reversal")
    await expect(page.locator("#alerts tbody tr")).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "board.png"))

    await row.get_by_role("link", name="reversal").click()
    await expect(page.locator("#summary")).to_contain_text("reversed")
    await expect(page.locator("#plots")).to_have_attribute("data-charts", "4", timeout=10_000)
    assert await page.locator("#plots canvas").count() >= 4
    await expect(page.locator("#evidence tbody")).to_contain_text("p1")

    await page.get_by_role("link", name=thief).first.click()
    await expect(page.locator("#title")).to_have_text(f"Meter {thief}")
    await expect(page.locator("#latest tbody")).to_contain_text("v1")
    await expect(page.locator("#plots")).to_have_attribute("data-charts", "4", timeout=10_000)
    await expect(page.locator("#alerts tbody")).to_contain_text("reversal")
