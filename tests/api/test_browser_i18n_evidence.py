"""A case walked in zh-CN in headless Chromium, down to the evidence pack the operator downloads."""

import asyncio
import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from playwright.async_api import Browser, FilePayload, Page, expect

from tests.api.test_browser import Live, browser, live_service, open_when_up, sign_in
from tests.api.test_photos import jpeg

__all__ = ["browser", "live_service"]  # fixtures shared with the pages' other browser tests

#: The crew's finding as written on site; the pack must hand it over unchanged.
FINDING = "电流互感器二次侧反接，封印被破坏"


async def _download(page: Page, link: str, into: Path) -> bytes:
    """Click a download link of the page and return the file's bytes."""
    async with page.expect_download() as info:
        await page.locator(link).click()
    download = await info.value
    target = into / download.suggested_filename
    await download.save_as(target)
    return target.read_bytes()


def _render(pdf: Path) -> tuple[int, str]:
    """Render a PDF's pages (pdftoppm); return how many were drawn, and its text."""
    prefix = pdf.parent / "page"
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(prefix)], check=True)
    drawn = [p for p in pdf.parent.glob("page-*.png") if p.stat().st_size > 2_000]
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True)
    return len(drawn), text.stdout


@pytest.mark.poppler
async def test_a_case_walked_in_chinese_ends_in_an_evidence_pack_that_verifies(
    browser: Browser, live_service: Live, tmp_path: Path
) -> None:
    base, thief = live_service.base, live_service.thief
    desk = await browser.new_context(locale="zh-CN", accept_downloads=True)
    page = await desk.new_page()
    await open_when_up(page, base + "/")
    await sign_in(page, live_service.tokens["operator"], "operator (值班员)")
    row = page.locator("#alerts tbody tr", has_text=thief)
    await expect(row).to_be_visible(timeout=20_000)
    await row.get_by_role("link", name="移相法：电流互感器极性反接").click()
    await page.locator("#work-order-form textarea[name=instructions]").fill("核对电流互感器极性")
    await page.locator("#work-order-form input[name=assignee]").fill("crew1")
    await page.locator("#work-order-form button").click()
    await expect(page.locator("#case .work-orders")).to_contain_text("核对电流互感器极性")
    alert_page = page.url

    crew = await browser.new_context(locale="zh-CN")
    phone = await crew.new_page()
    await phone.goto(base + "/crew")
    await phone.locator("#sign-in").click()
    await phone.locator("#sign-in-form input[name=username]").fill("crew1")
    await phone.locator("#sign-in-form input[name=password]").fill("crew1-password")
    await phone.locator("#sign-in-form button[type=submit]").click()
    order = phone.locator("#orders article.order")
    await expect(order).to_contain_text("核对电流互感器极性")
    await order.get_by_role("button", name="出发").click()
    await order.get_by_role("button", name="已到现场").click()
    await expect(order).to_have_attribute("data-status", "on_site")
    seal = jpeg("navy")
    await order.locator("input[type=file]").set_input_files(
        FilePayload(name="封印.jpg", mimeType="image/jpeg", buffer=seal)
    )
    await expect(order.locator(".order-photos figure.photo")).to_have_count(1)
    await order.locator("select[name=outcome]").select_option("theft_confirmed")
    await order.get_by_label("窃电手法").fill("reversal")
    await order.locator("textarea[name=note]").fill(FINDING)
    await order.get_by_role("button", name="记录处理结果").click()
    await expect(order).to_have_attribute("data-status", "done")
    await expect(order).to_contain_text("确认窃电")
    await crew.close()

    # Back at the desk: the pack, in the reader's language on the page.
    await page.goto(alert_page)
    pack_box = page.locator("#evidence-pack")
    await expect(pack_box).to_contain_text("证据包")
    await expect(page.locator("#pack-zip")).to_have_text("全部文件及校验清单（ZIP）")
    pack = zipfile.ZipFile(io.BytesIO(await _download(page, "#pack-zip", tmp_path)))
    manifest = json.loads(pack.read("manifest.json"))
    for entry in manifest["files"]:
        data = pack.read(entry["name"])
        assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert manifest["pack_sha256"] == hashlib.sha256(pack.read("SHA256SUMS")).hexdigest()
    names = {entry["name"] for entry in manifest["files"]}
    assert any(name.endswith(hashlib.sha256(seal).hexdigest() + ".jpg") for name in names)
    work = json.loads(pack.read("case.json"))
    assert work["work_orders"][0]["outcome_note"] == FINDING

    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(await _download(page, "#pack-pdf", tmp_path))
    pages, text = await asyncio.to_thread(_render, pdf)
    assert pages >= 2
    assert thief in text
    assert FINDING.replace("，", "") in text.replace(" ", "").replace("\n", "").replace("，", "")

    # The same box in English, by the header's switch.
    await page.locator("#language").select_option("en")
    await expect(pack_box).to_contain_text("Evidence pack")
    await expect(page.locator("#pack-pdf")).to_have_text("report (PDF)")
    await desk.close()
