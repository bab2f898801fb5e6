"""Take the README's screenshots: runs the demo, opens each page in headless Chromium.

Usage: .venv/bin/python docs/screenshots.py (writes docs/screenshots/*.png)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path

from playwright.async_api import async_playwright

OUT = Path(__file__).parent / "screenshots"
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


def _alerts(base: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(base + "/api/alerts?active=true") as resp:
        items: list[dict[str, object]] = json.load(resp)["items"]
    return items


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
            "meterguard.cli",
            "demo",
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            alerts: list[dict[str, object]] = []
            for _ in range(120):  # the demo's alerts need ~30 s of readings
                with contextlib.suppress(OSError):
                    alerts = _alerts(base)
                    if len(alerts) >= 3:
                        break
                await asyncio.sleep(1)
            await asyncio.sleep(20)  # a little more history for the plots
            first = max(alerts, key=lambda a: float(str(a["estimated_kwh_lost"])))
            OUT.mkdir(exist_ok=True)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = await browser.new_page(viewport={"width": 1280, "height": 720})
                pages = [
                    ("board.png", "/", False),
                    ("alert.png", f"/alerts/{first['id']}", True),
                    ("meter.png", f"/meters/{first['meter']}", True),
                ]
                for name, path, full in pages:
                    await page.goto(base + path)
                    await page.wait_for_load_state("networkidle")
                    await asyncio.sleep(1.0)
                    await page.screenshot(path=str(OUT / name), full_page=full)
                    print("wrote", OUT / name)
                phone = await browser.new_page(viewport={"width": 390, "height": 800})
                await phone.goto(base + "/")
                await asyncio.sleep(1.5)
                await phone.screenshot(path=str(OUT / "board-phone.png"))
                print("wrote", OUT / "board-phone.png")
                await browser.close()
        finally:
            demo.terminate()
            await demo.wait()


if __name__ == "__main__":
    asyncio.run(main())
