"""The alert board in headless Chromium: server-side filters, live rows and row actions."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, expect

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.api import test_browser
from tests.api.serving import serving
from tests.api.test_browser import Live, open_when_up, sign_in

# The service and browser fixtures of the page tests, shared rather than copied.
browser = test_browser.browser
live_service = test_browser.live_service
quiet_service = test_browser.quiet_service

REASON = "CT turned back and sealed, checked on site"


async def api_get(page: Page, live: Live, path: str) -> Any:
    """GET an API path as the operator, apart from the page, and return its JSON."""
    token = live.tokens["operator"]
    resp = await page.request.get(live.base + path, headers={"Authorization": f"Bearer {token}"})
    assert resp.ok, f"{path}: {resp.status}"
    return await resp.json()


async def pick(page: Page, name: str, value: str) -> None:
    """Choose a value in one of the board's filter selects."""
    await page.locator(f"#filters select[name={name}]").select_option(value)


async def test_operator_filters_acknowledges_assigns_and_clears_from_the_board(
    browser: Browser, quiet_service: Live
) -> None:
    base, thief = quiet_service.base, quiet_service.thief
    page = await browser.new_page()
    clears: list[str] = []
    page.on("request", lambda r: clears.append(r.url) if r.url.endswith("/clear") else None)
    await open_when_up(page, base + "/")
    await expect(page.locator("#live")).to_have_class("live on")
    rows = page.locator("#alerts tbody tr")
    await expect(rows).to_have_text(["no alerts"])
    await expect(page.locator("#open-summary")).to_have_text("0 open cases · 0 kWh estimated lost")
    quiet_service.begin_theft()

    # The reversal arrives through the stream; a viewer gets no controls on it.
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row).to_be_visible(timeout=20_000)
    await expect(rows).to_have_count(1)
    await expect(row.get_by_role("link", name="reversal")).to_be_visible()
    await expect(row.locator("button")).to_have_count(0)
    await expect(page.locator("#actions-head")).to_be_hidden()
    await expect(page.locator("#open-summary")).to_contain_text("1 open case · ")
    reversal = page.locator("#stats tbody tr[data-kind=reversal]")
    await expect(reversal.locator("[data-outcome=open]")).to_have_text("1")
    alert_id = await row.get_attribute("data-alert-id")
    assert alert_id

    await sign_in(page, quiet_service.tokens["operator"], "operator (operator)")
    await expect(row.get_by_role("button", name="Ack")).to_be_visible()
    await expect(page.locator("#more")).to_be_hidden()

    # Each filter asks the API again; the thief's row is there only when it fits.
    await pick(page, "kind", "bypass")
    await expect(rows).to_have_text(["no alerts"])
    await pick(page, "kind", "reversal")
    await expect(row).to_be_visible()
    await pick(page, "class", "commercial")
    await expect(rows).to_have_text(["no alerts"])
    await pick(page, "class", "residential")
    await expect(row).to_be_visible()
    meter = await api_get(page, quiet_service, f"/api/meters/{thief}")
    await pick(page, "transformer", meter["transformer"])
    await expect(row).to_be_visible()
    await page.locator("#filters input[name=meter]").fill("M-NOT-THERE")
    await expect(rows).to_have_text(["no alerts"])
    await page.locator("#filters input[name=meter]").fill(thief)
    await expect(row).to_be_visible()
    await pick(page, "sort", "severity")
    await expect(row).to_be_visible()

    # A failed request is reported, not swallowed; the button works once the network does.
    async def refuse(route: Route) -> None:
        await route.abort()

    await page.route("**/acknowledge", refuse)
    await row.get_by_role("button", name="Ack").click()
    await expect(page.locator("#mg-error")).to_contain_text("Acknowledge failed")
    await page.unroute("**/acknowledge", refuse)
    await row.get_by_role("button", name="Ack").click()
    await expect(row.locator("td[data-label=Acknowledged]")).to_have_text("operator")
    await expect(row.get_by_role("button", name="Ack")).to_be_hidden()
    await expect(page.locator("#mg-error")).to_be_hidden()
    case = await api_get(page, quiet_service, f"/api/alerts/{alert_id}/case")
    assert [a["user"] for a in case["acknowledgements"]] == ["operator"]
    await pick(page, "acknowledged", "false")
    await expect(rows).to_have_text(["no alerts"])
    await pick(page, "acknowledged", "true")
    await expect(row.locator("td[data-label=Acknowledged]")).to_have_text("operator")

    await row.locator("input[name=assignee]").fill("crew1")
    await row.get_by_role("button", name="Assign").click()
    await expect(row.locator("td[data-label=Assignee]")).to_have_text("crew1")
    case = await api_get(page, quiet_service, f"/api/alerts/{alert_id}/case")
    assert [(a["assignee"], a["assigned_by"]) for a in case["assignments"]] == [
        ("crew1", "operator")
    ]

    # Clearing on a phone: the card keeps its controls on the screen; a reason is required.
    await page.set_viewport_size({"width": 390, "height": 844})
    await row.get_by_role("button", name="Clear", exact=True).click()
    reason = row.get_by_label("reason for clearing")
    confirm = row.get_by_role("button", name="Clear alert")
    box = await confirm.bounding_box()
    assert box
    assert 0 <= box["x"] <= box["x"] + box["width"] <= 390, box
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await confirm.click()  # empty: the browser keeps the form from being sent
    assert await reason.evaluate("(input) => input.matches(':invalid')")
    await reason.fill("   ")
    await confirm.click()
    await expect(page.locator("#mg-error")).to_contain_text("a reason is required")
    await reason.fill(REASON)
    await confirm.click()
    await expect(rows).to_have_text(["no alerts"])
    await expect(page.locator("#open-summary")).to_have_text("0 open cases · 0 kWh estimated lost")
    assert len(clears) == 1, clears  # only the request with a reason went out
    await pick(page, "status", "cleared")
    await expect(row.locator("td[data-label=State]")).to_have_text("cleared")
    await expect(row.get_by_role("button", name="Ack")).to_be_hidden()
    case = await api_get(page, quiet_service, f"/api/alerts/{alert_id}/case")
    audit = [e for e in case["audit"] if e["action"] == "clear"]
    assert [(e["actor"], e["detail"].get("reason")) for e in audit] == [("operator", REASON)]
    cleared = await api_get(page, quiet_service, f"/api/alerts?active=false&meter={thief}")
    assert [a["id"] for a in cleared["items"]] == [alert_id]


async def test_operator_clears_an_alert_on_its_page_with_a_reason(
    browser: Browser, live_service: Live
) -> None:
    base, thief = live_service.base, live_service.thief
    page = await browser.new_page()
    await open_when_up(page, base + "/")
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row).to_be_visible(timeout=20_000)
    alert_id = await row.get_attribute("data-alert-id")
    await sign_in(page, live_service.tokens["operator"], "operator (operator)")
    await row.get_by_role("link", name="reversal").click()
    form = page.locator("#clear-form")
    await expect(form).to_be_visible()
    await form.get_by_label("reason for clearing").fill("  ")
    await form.get_by_role("button", name="Clear alert").click()
    await expect(page.locator("#mg-error")).to_contain_text("needs a reason")
    await form.get_by_label("reason for clearing").fill(REASON)
    await form.get_by_role("button", name="Clear alert").click()
    # The page reloads with the alert ended: its state, the reason and the history say so.
    facts = page.locator("#facts")
    await expect(facts).to_contain_text(f"operator: {REASON}")
    await expect(facts.locator("dd").first).to_have_text("cleared")
    await expect(page.locator("#history tbody tr").last).to_contain_text("clear")
    await expect(page.locator("#clear-form")).to_be_hidden()
    detail = await api_get(page, live_service, f"/api/alerts/{alert_id}")
    assert detail["active"] is False
    # When it was raised stands beside its start, in the browser's own time format.
    names = facts.locator("dt")
    await expect(names.nth(2)).to_have_text("start")
    await expect(names.nth(3)).to_have_text("raised")
    await expect(names.nth(4)).to_have_text("end")
    shown = await page.evaluate("(iso) => new Date(iso).toLocaleString()", detail["raised"])
    await expect(facts.locator("dd").nth(3)).to_have_text(shown)

    # An alert the API cannot say was raised when shows a dash, not a broken page.
    async def unknown_raise(route: Route) -> None:
        answer = await route.fetch()
        await route.fulfill(response=answer, json={**await answer.json(), "raised": None})

    await page.route(f"**/api/alerts/{alert_id}", unknown_raise)
    await page.reload()
    await expect(facts.locator("dd").nth(3)).to_have_text("—")
    await expect(facts).to_contain_text(f"operator: {REASON}")


@pytest.fixture
async def crowded(tmp_path: Path) -> AsyncIterator[tuple[str, Runtime]]:
    """The API alone, serving 130 active alerts (one per meter) to anonymous viewers."""
    meters = [Meter(id=f"M{n:03d}", service="3p4w", nominal_v=230) for n in range(132)]
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role="viewer"),
        meters=meters,
    )
    runtime = Runtime.open(settings)
    for n in range(130):
        await runtime.alerts.apply(_opened(n, kwh=float(n)))
    async with serving(create_app(settings, runtime)) as base:
        yield base, runtime
    await runtime.close()


async def _announce(runtime: Runtime, event: AlertEvent) -> None:
    """Store an engine event and publish it, as the service does."""
    assert await runtime.alerting.engine_event(event)


def _opened(n: int, kwh: float) -> AlertEvent:
    alert = Alert(
        id=f"A{n:03d}",
        meter=f"M{n:03d}",
        kind=AlertKind.BYPASS,
        severity=Severity.MAJOR,
        start=1_767_225_600.0 + n,
        confidence=0.9,
        estimated_kwh_lost=kwh,
        summary=f"alert {n}",
    )
    return AlertEvent(type=AlertEventType.OPEN, ts=alert.start, alert=alert)


async def test_the_board_pages_by_loss_and_places_a_live_alert_in_order(
    browser: Browser, crowded: tuple[str, Runtime]
) -> None:
    base, runtime = crowded
    page = await browser.new_page()
    await page.goto(base + "/")
    await expect(page.locator("#live")).to_have_class("live on")
    rows = page.locator("#alerts tbody tr")
    await expect(rows).to_have_count(100)
    # Largest estimated loss first: A129 down to A030 on the first page.
    assert await rows.first.get_attribute("data-alert-id") == "A129"
    assert await rows.last.get_attribute("data-alert-id") == "A030"
    # While page 2 is on its way, an alert that belongs on it, but that the page was read
    # too early to hold, arrives through the stream: it is judged once the page is in, not
    # against the first page's last row.
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def hold(route: Route) -> None:
        answer = await route.fetch()  # the server reads page 2 now, before the alert exists
        in_flight.set()
        await release.wait()
        await route.fulfill(response=answer)

    await page.route("**/api/alerts?*cursor=*", hold)
    await page.locator("#more").click()
    await asyncio.wait_for(in_flight.wait(), 10)
    await _announce(runtime, _opened(130, kwh=20.5))
    await asyncio.sleep(0.5)  # the event reaches the page while the page is held
    release.set()
    await expect(rows).to_have_count(131)
    await expect(page.locator("#more")).to_be_hidden()
    assert await rows.last.get_attribute("data-alert-id") == "A000"
    # Another arrives with everything loaded, and takes its place by loss, not the end.
    await _announce(runtime, _opened(131, kwh=64.5))
    await expect(rows).to_have_count(132)
    ids = [await r.get_attribute("data-alert-id") for r in await rows.all()]
    # Sorted by loss, largest first: 65 kWh (A065), the new 64.5, then 64 (A064); and
    # 21 kWh (A021), the 20.5 that came while page 2 loaded, then 20 (A020).
    assert ids.index("A065") + 1 == ids.index("A131") == ids.index("A064") - 1
    assert ids.index("A021") + 1 == ids.index("A130") == ids.index("A020") - 1
    await page.close()
