"""The web pages in headless Chromium (Debian's package), driven by Playwright."""

import asyncio
import contextlib
import math
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, FilePayload, Page, async_playwright, expect

from meterguard.runtime import Runtime
from service.demo import demo_settings
from service.supervisor import Service
from simulators.fleet import demo_fleet
from simulators.modbus_gateway import ModbusGateway
from tests.api.test_photos import jpeg
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


@dataclass(frozen=True)
class Live:
    """The running service: its URL, the thief's meter, the users' tokens by name, and
    `begin_theft`, which turns the thief's CT round from the gateway's present time on."""

    base: str
    thief: str
    tokens: dict[str, str]
    begin_theft: Callable[[], None]


@contextlib.asynccontextmanager
async def running_service(tmp_path: Path, theft_at_start: bool) -> AsyncIterator[Live]:
    """A 12-meter fleet, one reversed CT raised after 6 s, the service and API on 127.0.0.1.

    The CT is reversed from the start, or held until the test calls `begin_theft`: a
    test that must see the board empty first cannot rely on opening it within 6 s.
    Users "operator" (operator) and "crew1" (crew) exist, each with the password
    "<name>-password"; anonymous callers are viewers.
    """
    fleet, truth = demo_fleet(12, seed=5, thieves=1, solar=1)
    port, api_port = free_port(), free_port()
    settings = demo_settings(fleet, [port], tmp_path, api_port, interval_s=0.5)
    settings.detectors["reversal"]["raise_after_s"] = 6
    runtime = Runtime.open(settings)
    tokens: dict[str, str] = {}
    for name, role in (("operator", "operator"), ("crew1", "crew")):
        _, tokens[name] = await runtime.users.create_user(name, role, password=f"{name}-password")

    def clock() -> float:
        return 12 * 3600.0 + time.time()

    thief = next(sim for sim in fleet if sim.meter.id == truth[0].meter)
    reversal = thief.reversal
    assert reversal is not None
    if not theft_at_start:
        reversal.since_s = math.inf

    def begin_theft() -> None:
        reversal.since_s = clock()

    gateway = ModbusGateway([(u + 1, s) for u, s in enumerate(fleet)], port=port, clock=clock)
    async with gateway:
        task = asyncio.create_task(Service(runtime).run())
        try:
            yield Live(f"http://127.0.0.1:{api_port}", truth[0].meter, tokens, begin_theft)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runtime.close()


@pytest.fixture
async def live_service(tmp_path: Path) -> AsyncIterator[Live]:
    """The running service with the thief's CT reversed from the start."""
    async with running_service(tmp_path, theft_at_start=True) as live:
        yield live


@pytest.fixture
async def quiet_service(tmp_path: Path) -> AsyncIterator[Live]:
    """The running service with no theft until the test calls `begin_theft`."""
    async with running_service(tmp_path, theft_at_start=False) as live:
        yield live


async def open_when_up(page: Page, url: str) -> None:
    """Open a page of the service, which comes up a moment after the fixture starts it."""
    for _ in range(50):
        with contextlib.suppress(Exception):
            await page.goto(url)
            return
        await asyncio.sleep(0.2)
    await page.goto(url)


async def sign_in(page: Page, token: str, name: str) -> None:
    """Use the header's sign-in control and wait for the page to show who is signed in."""
    await page.locator("#sign-in").click()
    await page.locator("#sign-in-form input[name=token]").fill(token)
    await page.locator("#sign-in-form button[type=submit]").click()
    await expect(page.locator("#whoami")).to_contain_text(name)


async def test_alert_appears_live_and_pages_draw_plots(
    browser: Browser, quiet_service: Live, tmp_path: Path
) -> None:
    base, thief = quiet_service.base, quiet_service.thief
    page = await browser.new_page()
    await open_when_up(page, base + "/")
    await expect(page.locator("#alerts tbody")).to_contain_text("no alerts")
    await expect(page.locator("#live")).to_have_class("live on")
    quiet_service.begin_theft()
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


async def test_operator_and_crew_close_a_case_and_the_statistics_count_it(
    browser: Browser, quiet_service: Live
) -> None:
    base, thief = quiet_service.base, quiet_service.thief
    # The crew's phone lets the page know where it is: the photo records it.
    context = await browser.new_context(
        geolocation={"latitude": 31.2304, "longitude": 121.4737}, permissions=["geolocation"]
    )
    page = await context.new_page()
    await open_when_up(page, base + "/")
    await sign_in(page, quiet_service.tokens["operator"], "operator (operator)")
    await expect(page.locator("#live")).to_have_class("live on")
    await expect(page.locator("#alerts tbody")).to_contain_text("no alerts")
    await expect(page.locator("#stats tbody")).to_contain_text("no closed work orders")
    quiet_service.begin_theft()
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row).to_be_visible(timeout=20_000)  # from the stream, without a reload

    await row.get_by_role("link", name="reversal").click()
    await expect(page.locator("#plots")).to_have_attribute("data-charts", "4", timeout=10_000)
    await expect(page.locator("#whoami")).to_contain_text("operator")
    await page.locator("#ack-form input[name=note]").fill("looking into it")
    await page.locator("#ack-form button").click()
    await expect(page.locator("#case .acks")).to_contain_text("operator: looking into it")
    await page.locator("#work-order-form textarea[name=instructions]").fill("check the CT on L1")
    await page.locator("#work-order-form input[name=assignee]").fill("crew1")
    await page.locator("#work-order-form button").click()
    orders = page.locator("#case .work-orders")
    await expect(orders).to_contain_text("open · crew crew1 · check the CT on L1")
    await expect(page.locator("#case .audit")).to_contain_text("operator")
    await page.locator("#sign-out").click()
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("#actions")).to_be_hidden()

    await page.goto(base + "/crew")
    await expect(page.locator("#orders")).to_contain_text("Sign in with your name and password")
    await page.locator("#sign-in").click()
    await page.locator("#sign-in-form input[name=token]").fill("not-a-token")
    await page.locator("#sign-in-form button[type=submit]").click()
    await expect(page.locator("#sign-in-form")).to_contain_text("unknown or revoked token")
    await page.locator("#sign-in-form input[name=token]").fill("")
    await page.locator("#sign-in-form input[name=username]").fill("crew1")
    await page.locator("#sign-in-form input[name=password]").fill("not-the-password")
    await page.locator("#sign-in-form button[type=submit]").click()
    await expect(page.locator("#sign-in-form")).to_contain_text("wrong name or password")
    # The crew member signs in with name and password: an expiring token from /api/login.
    await page.locator("#sign-in-form input[name=password]").fill("crew1-password")
    await page.locator("#sign-in-form button[type=submit]").click()
    await expect(page.locator("#whoami")).to_contain_text("crew1 (crew)")
    order = page.locator("#orders article.order")
    await expect(order).to_have_count(1)
    await expect(order).to_contain_text(f"reversal at {thief}")
    await expect(order).to_contain_text("check the CT on L1")
    await order.get_by_role("button", name="En route").click()
    await expect(order).to_have_attribute("data-status", "en_route")
    await expect(order.get_by_role("button", name="En route")).to_have_count(0)
    await order.get_by_role("button", name="On site").click()
    await expect(order).to_have_attribute("data-status", "on_site")
    # A photo of the seal, as the phone's camera gives it to the file input.
    photo = FilePayload(name="seal.jpg", mimeType="image/jpeg", buffer=jpeg("maroon"))
    await order.locator("input[type=file][capture=environment]").set_input_files(photo)
    figure = order.locator(".order-photos figure.photo")
    await expect(figure).to_have_count(1)
    await expect(figure).to_contain_text("crew1")
    await expect(figure).to_contain_text("31.23040, 121.47370")
    await expect(figure.locator("img")).to_have_js_property("complete", True)
    assert await figure.locator("img").evaluate("img => img.naturalWidth") == 64
    # Not a photo: the server says why, and nothing is added.
    text = FilePayload(name="notes.jpg", mimeType="image/jpeg", buffer=b"seal 0412 cut")
    await order.locator("input[type=file]").set_input_files(text)
    await expect(page.locator("#mg-error")).to_contain_text("422")
    await expect(order.locator(".order-photos figure.photo")).to_have_count(1)
    alert_url = await order.locator("h2 a").get_attribute("href")
    await order.get_by_label("Seals intact").select_option("no")
    await order.get_by_label("Wiring correct").select_option("no")
    await order.get_by_label("CT ratio fits the load").select_option("yes")
    await order.get_by_label("evidence").fill("photos 3 and 4")
    await order.get_by_role("button", name="Save checklist").click()
    # The saved checklist comes back from the server on the redrawn card.
    await expect(order.locator(".findings")).to_contain_text("Seals intact: no")
    await expect(order.get_by_label("Seals intact")).to_have_value("no")
    await expect(order.get_by_label("evidence")).to_have_value("photos 3 and 4")
    await order.locator("select[name=outcome]").select_option("theft_confirmed")
    await order.get_by_label("theft method").fill("reversal")
    await order.get_by_label("recovered kWh").fill("125.5")
    await order.locator("textarea[name=note]").fill("CT on L1 turned round, seal broken")
    await order.get_by_role("button", name="Record outcome").click()
    await expect(order).to_have_attribute("data-status", "done")
    await expect(order).to_contain_text(
        "done: theft confirmed by reversal · 125.5 kWh recovered · CT on L1 turned round"
    )
    await expect(order).to_contain_text("Seals intact: no · Wiring correct: no")
    await expect(order).to_contain_text("evidence: photos 3 and 4")
    await page.locator("#sign-out").click()  # revokes the login token, then reloads
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("#orders")).to_contain_text("Sign in with your name and password")

    await page.goto(base + "/")
    await sign_in(page, quiet_service.tokens["operator"], "operator")
    reversal = page.locator("#stats tbody tr[data-kind=reversal]")
    await expect(reversal.locator("[data-outcome=raised]")).to_have_text("1")
    await expect(reversal.locator("[data-outcome=theft_confirmed]")).to_have_text("1")
    await expect(reversal.locator("[data-outcome=no_fault_found]")).to_have_text("0")
    await expect(reversal.locator("[data-outcome=precision]")).to_have_text("100 %")
    # The operator sees the crew's photo on the alert page.
    await page.goto(base + str(alert_url))
    shown = page.locator("#photos figure.photo")
    await expect(shown).to_have_count(1)
    await expect(shown).to_contain_text("crew1")
    await expect(shown.locator("img")).to_have_js_property("complete", True)
    assert await shown.locator("img").evaluate("img => img.naturalWidth") == 64
