"""The pages in zh-CN and in English in headless Chromium, and the header's language switch."""

import httpx
from playwright.async_api import Browser, FilePayload, expect

from tests.api.test_browser import Live, browser, live_service, open_when_up
from tests.api.test_photos import jpeg

__all__ = ["browser", "live_service"]  # fixtures shared with the pages' other browser tests

#: What the board shows for the thief's reversed CT, in each language.
REVERSAL = {"zh-CN": "移相法：电流互感器极性反接", "en": "reversal"}


async def test_board_alert_and_crew_pages_in_chinese_then_english_by_the_switch(
    browser: Browser, live_service: Live
) -> None:
    base, thief = live_service.base, live_service.thief
    context = await browser.new_context(locale="zh-CN")  # Accept-Language: zh-CN
    page = await context.new_page()
    await open_when_up(page, base + "/")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.locator("main h1")).to_contain_text("告警看板")
    await expect(page.locator("#alerts thead th").first).to_have_text("严重程度")
    await expect(page.locator("#stats thead")).to_contain_text("确认窃电")
    await expect(page.locator("header .brand")).to_have_text("meterguard")
    await expect(page.locator("#sign-in")).to_have_text("登录")
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row).to_be_visible(timeout=20_000)  # from the stream, rendered in Chinese
    await expect(row).to_contain_text(REVERSAL["zh-CN"])
    await expect(row.locator("td[data-field=summary]")).to_contain_text("有功功率反向")
    await expect(row.locator("td[data-field=state]")).to_have_text("未解除")
    await expect(row.locator("td[data-field=severity]")).to_have_text("重要")

    await row.get_by_role("link", name=REVERSAL["zh-CN"]).click()
    await expect(page.locator("#summary")).to_contain_text("有功功率反向")
    await expect(page.locator("#title")).to_contain_text(f"{thief}：{REVERSAL['zh-CN']}")
    await expect(page.locator("main h2").first).to_have_text("起始前后的读数")
    await expect(page.locator("#facts")).to_contain_text("置信度")
    await expect(page.locator("#plots figcaption").first).to_have_text("电压 (V)", timeout=10_000)
    await expect(page.locator("#evidence thead")).to_contain_text("起始")
    alert_id = page.url.rsplit("/", 1)[1]

    async with httpx.AsyncClient(base_url=base) as api:
        operator = {"Authorization": f"Bearer {live_service.tokens['operator']}"}
        made = await api.post(
            "/api/work-orders",
            json={"alert_ids": [alert_id], "instructions": "核对电流互感器", "assignee": "crew1"},
            headers=operator,
        )
        assert made.status_code == 201

    await page.goto(base + "/crew")
    await expect(page.locator("#orders")).to_contain_text("请用用户名和密码")
    await page.locator("#sign-in").click()
    form = page.locator("#sign-in-form")
    await form.get_by_placeholder("用户名").fill("crew1")
    await form.get_by_placeholder("密码").fill("crew1-password")
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#whoami")).to_contain_text("crew1 (现场人员)")
    order = page.locator("article.order")
    await expect(order.locator(".badge.status")).to_have_text("待处理")
    await expect(order.locator("h2")).to_contain_text(f"{thief}：{REVERSAL['zh-CN']}")
    await expect(order.locator(".summary")).to_contain_text("有功功率反向")
    await expect(order.locator("legend")).to_have_text("现场检查清单")
    await expect(order.get_by_label("封印完好")).to_have_value("not_checked")
    await expect(order.get_by_role("button", name="出发")).to_be_visible()
    # A photo of the seal from the phone's camera, in Chinese too.
    camera = order.get_by_label("拍照或选择照片")
    await camera.set_input_files(FilePayload(name="封印.jpg", mimeType="image/jpeg", buffer=jpeg()))
    await expect(order.locator(".order-photos h3")).to_have_text("照片（1）")
    await expect(order.locator(".order-photos figure.photo")).to_contain_text("crew1")

    # The switch: a signed-in crew member's choice goes on their record.
    await page.locator("#language").select_option("en")
    await expect(page.locator("main h1")).to_contain_text("My work orders")
    await expect(order.locator("h2")).to_contain_text(f"reversal at {thief}")
    await expect(order.locator(".summary")).to_contain_text("active power reversed")
    await expect(order.get_by_role("button", name="En route")).to_be_visible()
    # The record wins over the browser's Accept-Language with no cookie left.
    await context.clear_cookies()
    await page.reload()
    await expect(page.locator("main h1")).to_contain_text("My work orders")
    await expect(page.locator("#whoami")).to_contain_text("crew1 (crew)")

    # The board and the alert in English.
    await page.goto(base + "/")
    await expect(page.locator("main h1")).to_contain_text("Alert board")
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row.locator("td[data-field=summary]")).to_contain_text("active power reversed")
    await row.get_by_role("link", name=REVERSAL["en"]).click()
    await expect(page.locator("main h2").first).to_have_text("Readings around the onset")
    await expect(page.locator("#summary")).to_contain_text("active power reversed")
    await expect(page.locator("#title")).to_contain_text(f"reversal at {thief}")
    await context.close()


async def test_a_visitor_switches_the_board_to_english_and_back_by_a_cookie(
    browser: Browser, live_service: Live
) -> None:
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await open_when_up(page, live_service.base + "/")
    await expect(page.locator("main h1")).to_contain_text("告警看板")
    await expect(page.locator("#language")).to_have_value("zh-CN")
    await page.locator("#language").select_option("en")
    await expect(page.locator("main h1")).to_contain_text("Alert board")
    await expect(page.locator("#filters")).to_contain_text("Severity")
    assert {c["name"]: c["value"] for c in await context.cookies()}["mg_lang"] == "en"
    await page.locator("#language").select_option("zh-CN")
    await expect(page.locator("main h1")).to_contain_text("告警看板")
    await expect(page.locator("#filters")).to_contain_text("严重程度")
    await context.close()
