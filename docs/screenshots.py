"""Take the README's screenshots: runs the demo, opens each page in headless Chromium.

Usage: .venv/bin/python docs/screenshots.py (writes docs/screenshots/{en,zh-CN}/*.png)

The demo plays its story quickly (--pace 5) and the pages are taken once every kind of the
story is on the board, once in English and once in Simplified Chinese (the browser's
Accept-Language chooses).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

OUT = Path(__file__).parent / "screenshots"
#: The kinds of the demo's story (docs/SIMULATORS.md): the board shows them all.
STORY_KINDS = 7
LANGUAGES = ("en", "zh-CN")
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: How the demo prints a user: "  crew1     (crew): password <password>  token <token>".
TOKEN_LINE = re.compile(r"^\s+(\S+)\s+\((\w+)\): password \S+\s+token ([A-Za-z0-9_-]{20,})$")


async def _read_tokens(stdout: asyncio.StreamReader, tokens: dict[str, str]) -> None:
    """Collect the tokens the demo prints, then keep draining its output."""
    async for raw in stdout:
        match = TOKEN_LINE.match(raw.decode(errors="replace").rstrip())
        if match:
            tokens[match.group(1)] = match.group(3)


def _call(
    base: str, method: str, path: str, token: str, body: dict[str, object]
) -> dict[str, object]:
    """Send one authorised JSON request to the demo's API and return its answer."""
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as resp:
        answer: dict[str, object] = json.load(resp)
    return answer


async def _sign_in(page: Page, token: str) -> None:
    await page.locator("#sign-in").click()
    await page.locator("#sign-in-form input[name=token]").fill(token)
    await page.locator("#sign-in-form button[type=submit]").click()
    await page.locator("#whoami").wait_for()


def _alerts(base: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(base + "/api/alerts") as resp:
        items: list[dict[str, object]] = json.load(resp)["items"]
    return items


def _transformer_of(base: str, meter: str) -> str | None:
    """Return the transformer a meter hangs on, as the API knows it."""
    with urllib.request.urlopen(f"{base}/api/meters/{meter}") as resp:
        found = json.load(resp).get("transformer")
    return None if found is None else str(found)


async def _shoot(
    browser: Browser,
    base: str,
    tokens: dict[str, str],
    language: str,
    alert_id: str,
    meter: str,
    transformer: str | None,
) -> None:
    """Take every page in one language into docs/screenshots/<language>/."""
    out = OUT / language
    out.mkdir(parents=True, exist_ok=True)
    desk = await browser.new_context(locale=language, viewport={"width": 1280, "height": 720})
    page = await desk.new_page()
    await page.goto(base + "/")
    await _sign_in(page, tokens["operator"])
    pages = [
        ("board.png", "/", False),
        ("alert.png", f"/alerts/{alert_id}", True),
        ("meter.png", f"/meters/{meter}", True),
    ]
    if transformer is not None:
        pages.append(("transformer.png", f"/transformers/{transformer}", True))
    for name, path, full in pages:
        await page.goto(base + path)
        await page.wait_for_load_state("networkidle")
        await asyncio.sleep(1.0)
        await page.screenshot(path=str(out / name), full_page=full)
        print("wrote", out / name)
    await desk.close()
    phone = await browser.new_context(locale=language, viewport={"width": 390, "height": 800})
    board = await phone.new_page()
    await board.goto(base + "/")
    await asyncio.sleep(1.5)
    await board.screenshot(path=str(out / "board-phone.png"))
    print("wrote", out / "board-phone.png")
    crew = await phone.new_page()
    await crew.set_viewport_size({"width": 390, "height": 844})
    await crew.goto(base + "/crew")
    await _sign_in(crew, tokens["crew1"])
    await crew.locator("#orders article.order").first.wait_for()
    await asyncio.sleep(0.5)
    await crew.screenshot(path=str(out / "crew-phone.png"))
    print("wrote", out / "crew-phone.png")
    await phone.close()


async def main() -> None:
    """Run the demo, wait for its alerts, and screenshot each page."""
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium package")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="meterguard-shots-") as data_dir:
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            "demo",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            "--pace",
            "5",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert demo.stdout is not None
        tokens: dict[str, str] = {}
        reader = asyncio.create_task(_read_tokens(demo.stdout, tokens))
        try:
            alerts: list[dict[str, object]] = []
            for second in range(300):  # the story's last act is raised after ~2 minutes
                with contextlib.suppress(OSError):
                    alerts = _alerts(base)
                    if len({a["kind"] for a in alerts}) >= STORY_KINDS:
                        break
                if second % 15 == 0:
                    print(f"waiting for the story: {len(alerts)} alerts so far", flush=True)
                await asyncio.sleep(1)
            await asyncio.sleep(20)  # a little more history for the plots
            active = [a for a in alerts if a["end"] is None]
            ranked = sorted(active, key=lambda a: -float(str(a["estimated_kwh_lost"])))
            first = ranked[0]
            # Give the crew something to do: two work orders, one of them already under way.
            for n, alert in enumerate(ranked[:2]):
                note = "Check the CT orientation and the terminal cover seals."
                order = _call(
                    base,
                    "POST",
                    "/api/work-orders",
                    tokens["operator"],
                    {"alert_id": alert["id"], "instructions": note, "assignee": "crew1"},
                )
                if n == 0:
                    _call(
                        base,
                        "POST",
                        f"/api/alerts/{alert['id']}/acknowledge",
                        tokens["operator"],
                        {"note": "crew sent"},
                    )
                    _call(
                        base,
                        "POST",
                        f"/api/alerts/{alert['id']}/assign",
                        tokens["operator"],
                        {"assignee": "crew1"},
                    )
                    path = f"/api/work-orders/{order['id']}"
                    _call(base, "PATCH", path, tokens["operator"], {"status": "en_route"})
            for alert in ranked[2:3]:
                # One case closed, so the board's detector statistics have a row to show.
                order = _call(
                    base,
                    "POST",
                    "/api/work-orders",
                    tokens["operator"],
                    {"alert_id": alert["id"], "assignee": "crew1"},
                )
                path = f"/api/work-orders/{order['id']}"
                change: dict[str, object] = {
                    "outcome": "theft_confirmed",
                    "note": "CT leads swapped at the meter",
                }
                _call(base, "PATCH", path, tokens["operator"], change)
            balance = next((a for a in alerts if a["kind"] == "energy_balance"), None)
            transformer = None if balance is None else _transformer_of(base, str(balance["meter"]))
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                for language in LANGUAGES:
                    await _shoot(
                        browser,
                        base,
                        tokens,
                        language,
                        str(first["id"]),
                        str(first["meter"]),
                        transformer,
                    )
                await browser.close()
        finally:
            demo.terminate()
            await demo.wait()
            reader.cancel()


if __name__ == "__main__":
    asyncio.run(main())
