"""Security headers on every response: a content policy, no framing, no type sniffing.

The pages load their scripts and styles from /static only (no inline script or style), so
one strict Content-Security-Policy serves every page and API answer. The OpenAPI page is
the exception: it loads Swagger UI from the locations FastAPI names and runs one inline
script, so its policy is worked out from the page itself (those origins and that script's
hash), never wider.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The policy of the pages and the API: everything from this origin, no plugins, no frames.
POLICY = (
    "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", POLICY),
    # For browsers older than frame-ancestors.
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    # Alert and meter ids in page URLs stay on this site.
    ("Referrer-Policy", "no-referrer"),
)


class SecurityHeaders:
    """ASGI middleware that adds HEADERS to every HTTP response (kept if already set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None  # same origin: 'self' covers it
    return f"{parts.scheme}://{parts.netloc}"


def policy_for_page(html: str) -> str:
    """Return the narrowest policy under which a generated page (Swagger UI) works.

    Scripts from the origins its <script src> name, plus its inline scripts by hash;
    styles and images from the origins its <link href> name.
    """
    script_sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', html)
    inline_scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    linked = re.findall(r'<link[^>]*\bhref="([^"]+)"', html)
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline_scripts
    ]
    scripts = sorted({o for o in map(_origin, script_sources) if o})
    links = sorted({o for o in map(_origin, linked) if o})
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *scripts, *hashes]),
            " ".join(["style-src 'self'", *links]),
            " ".join(["img-src 'self' data:", *links]),
            "base-uri 'none'",
            "object-src 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
