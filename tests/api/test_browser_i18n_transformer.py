"""The transformer page in headless Chromium: reached from an alert and the board, in zh-CN."""

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from api.app import create_app
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.api.serving import serving
from tests.api.test_browser import browser, sign_in
from tests.api.test_transformers import H0, METERS, store_readings

__all__ = ["browser"]  # the fixture shared with the pages' other browser tests


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Serve the control room on stored readings of T1; yield its URL and a viewer's token."""
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path), api=ApiSettings(anonymous_role=None)
    )
    settings.meters = METERS
    runtime = Runtime.open(settings)
    try:
        _, token = await runtime.users.create_user("vic", "viewer")
        await store_readings(runtime)
        # As the engine would have recorded it: the newest data is the third hour's end.
        runtime.engine_activity.took(H0 + 3 * 3600 - 60, time.time())
        async with serving(create_app(settings, runtime)) as base:
            yield base, token
    finally:
        await runtime.close()


async def test_the_balance_page_is_linked_from_its_alert_and_the_board(
    browser: Browser, site: tuple[str, str]
) -> None:
    base, token = site
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{base}/alerts/F1-energy_balance-{int(H0)}")
    await sign_in(page, token, "vic")
    link = page.locator("#transformer-link")
    await expect(link).to_have_text("T1：台区总表与用户电量对比")
    await link.click()

    await expect(page.locator("#title")).to_have_text("变压器 T1")
    await expect(page.locator("main h2").first).to_contain_text("逐小时电量")
    await expect(page.locator("#plots")).to_have_attribute("data-charts", "2")
    await expect(page.locator("#plots figure.chart canvas")).to_have_count(2)
    await expect(page.locator("#plots figcaption").first).to_have_text(
        "台区总表与用户合计（每小时 kWh）"
    )
    facts = page.locator("#facts")
    await expect(facts).to_contain_text("线损允许值")
    await expect(facts).to_contain_text("6 %")
    await expect(facts).to_contain_text("2 / 48")  # two complete hours of the 48 shown
    first = page.locator(f"#hours-table tbody tr[data-ts='{int(H0)}'] td")
    await expect(first).to_have_text(
        [re.compile("2026"), "3.000", "2.700", "0.300", "0.180", "0.120", "是"]
    )
    await expect(page.locator(f"#hours-table tbody tr[data-ts='{int(H0)}']")).to_have_class("over")
    f1 = page.locator("#meters tbody tr[data-meter=F1]")
    await expect(f1).to_contain_text("台区总表")
    await expect(f1.get_by_role("link", name="线损异常（疑似无表窃电）")).to_be_visible()
    await expect(page.locator("#meters tbody tr")).to_have_count(3)  # not T2's C9
    # Each meter's page leads back to its transformer.
    await page.locator("#meters tbody tr[data-meter=C1] a").first.click()
    await expect(page.locator("#title")).to_have_text("电能表 C1")
    await page.locator("#transformer-link").click()
    await expect(page.locator("#title")).to_have_text("变压器 T1")

    await page.goto(base + "/")
    board_link = page.locator("#transformer-link")
    await expect(board_link).to_be_hidden()
    await page.locator("select[name=transformer]").select_option("T1")
    await expect(board_link).to_be_visible()
    await expect(board_link).to_have_text("逐小时线损")
    await board_link.click()
    await expect(page.locator("#title")).to_have_text("变压器 T1")
    await context.close()
