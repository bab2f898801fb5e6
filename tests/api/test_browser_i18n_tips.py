"""An operator takes a hotline call on the board (zh-CN): the tip opens a case shown there."""

from playwright.async_api import Browser, expect

from tests.api.test_browser import Live, browser, live_service, open_when_up, sign_in

__all__ = ["browser", "live_service"]  # fixtures shared with the pages' other browser tests


async def test_a_tip_taken_on_the_board_opens_a_case_and_a_second_joins_it(
    browser: Browser, live_service: Live
) -> None:
    base = live_service.base
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await open_when_up(page, base + "/")
    tip_box = page.locator("#tip-box")
    await expect(tip_box).to_be_hidden()  # viewers do not take tips
    await sign_in(page, live_service.tokens["operator"], "operator (值班员)")
    await expect(tip_box).to_be_visible()
    await tip_box.locator("summary").click()
    await expect(tip_box.locator("summary")).to_have_text("录入举报")
    form = page.locator("#tip-form")
    await form.locator("select[name=channel]").select_option("hotline")
    await expect(form.locator("select[name=channel] option:checked")).to_have_text("服务热线")
    await form.locator("input[name=meter]").fill("M0003")
    await form.locator("input[name=address]").fill("幸福路 12 号")
    await form.locator("textarea[name=text]").fill("邻居说电表箱有人动过，夜里有拉线")
    await form.get_by_role("button", name="立案").click()
    result = page.locator("#tip-result")
    await expect(result).to_contain_text("已立案")
    case_id = await result.locator("a").inner_text()
    row = page.locator("#alerts tbody tr", has_text="M0003")
    await expect(row).to_contain_text("窃电举报")
    await expect(row).to_contain_text("邻居说电表箱有人动过")

    # A second call about the same meter joins the case that is still open.
    await form.locator("select[name=channel]").select_option("wechat")
    await form.locator("textarea[name=text]").fill("又有人反映同一块表")
    await form.get_by_role("button", name="立案").click()
    await expect(result).to_contain_text("已并入未结案件")
    await expect(result.locator("a")).to_have_text(case_id)
    await expect(page.locator("#alerts tbody tr", has_text="窃电举报")).to_have_count(1)

    # A meter nobody has: the server's answer, and no case.
    await form.locator("input[name=meter]").fill("NO-SUCH-METER")
    await form.locator("textarea[name=text]").fill("地址不清")
    await form.get_by_role("button", name="立案").click()
    await expect(page.locator("#mg-error")).to_contain_text("404")
    await context.close()
