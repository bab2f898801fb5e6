"""Hostile input and browser protections: 422 never 500, security headers, user names."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings

ALERT_ID = "M1-reversal-1767225600"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    rt = Runtime.open(settings)
    alert = Alert(
        id=ALERT_ID,
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        confidence=0.9,
        estimated_kwh_lost=math.inf,  # absurd readings give absurd figures
        summary="phase 2 reversed",
    )
    await rt.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1, alert=alert))
    yield rt
    await rt.close()


@pytest.fixture
async def admin(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    _, token = await runtime.users.create_user("admin", "admin", password="admin-password")
    app = create_app(runtime.settings, runtime)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/users", b'{"name": "\\ud800", "role": "viewer"}', ["body", "name"]),
        ("/api/users", b'{"name": "x", "role": "viewer", "\\udfff": 1}', ["body"]),
        ("/api/login", b'{"name": "admin", "password": "\\uDBFF"}', ["body", "password"]),
        (f"/api/alerts/{ALERT_ID}/comments", b'{"text": "a\\ud83dz"}', ["body", "text"]),
        (f"/api/alerts/{ALERT_ID}/clear", b'{"reason": "\\udc00"}', ["body", "reason"]),
        (f"/api/alerts/{ALERT_ID}/assign", b'{"assignee": "\\u0000"}', ["body", "assignee"]),
        ("/api/work-orders", b'{"alert_ids": ["\\ud800"]}', ["body", "alert_ids", 0]),
    ],
)
async def test_lone_surrogates_and_nul_are_a_422_in_the_usual_shape(
    admin: tuple[httpx.AsyncClient, dict[str, str]], path: str, body: bytes, loc: list[object]
) -> None:
    client, headers = admin
    resp = await client.post(path, content=body, headers=headers)
    assert resp.status_code == 422, resp.text
    (problem,) = resp.json()["detail"]
    assert problem["loc"] == loc
    assert problem["type"] == "value_error"
    assert "is not accepted" in problem["msg"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"name": "caf\xe9", "role": "viewer"}', "the body is not UTF-8 text (byte 14"),
        (b"[" * 100_000 + b"]" * 100_000, "the body cannot be read as JSON"),
    ],
)
async def test_a_body_that_cannot_be_decoded_is_a_422(
    admin: tuple[httpx.AsyncClient, dict[str, str]], body: bytes, says: str
) -> None:
    client, headers = admin
    resp = await client.post("/api/users", content=body, headers=headers)
    assert resp.status_code == 422
    (problem,) = resp.json()["detail"]
    assert problem["loc"] == ["body"]
    assert problem["msg"].startswith(says)


async def test_an_echoed_input_with_a_surrogate_is_escaped_not_a_500(
    admin: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    # A body whose error echoes the input whole (a missing field) after the guard passed it.
    client, headers = admin
    resp = await client.post("/api/users", content=b'{"role": "viewer"}', headers=headers)
    assert resp.status_code == 422
    resp = await client.post(
        "/api/users",
        content=b'{"name": "ok", "role": "viewer", "extra": "fine"}',
        headers=headers,
    )
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["type"] == "extra_forbidden"


PAGES = ["/", f"/alerts/{ALERT_ID}", "/meters/M1", "/crew", "/static/board.js"]
ANSWERS = ["/api/alerts", "/api/alerts/nope", "/healthz", "/openapi.json", "/api/users"]


@pytest.mark.parametrize("path", PAGES + ANSWERS)
async def test_every_page_and_answer_carries_the_security_headers(
    admin: tuple[httpx.AsyncClient, dict[str, str]], path: str
) -> None:
    client, _ = admin
    resp = await client.get(path)  # /api/users is a 405, /api/alerts/nope a 404
    policy = resp.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"


async def test_a_server_error_carries_them_too(
    admin: tuple[httpx.AsyncClient, dict[str, str]],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.alerts, "page", broken)
    client, _ = admin
    resp = await client.get("/api/alerts")
    assert resp.status_code == 500
    assert resp.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]


async def test_pages_have_no_inline_script_or_style() -> None:
    static = Path(__file__).parents[2] / "api" / "static"
    for page in static.glob("*.html"):
        text = page.read_text()
        assert "<script>" not in text, page.name
        assert "style=" not in text, page.name
        assert "<style" not in text, page.name
        assert re.search(r"\son[a-z]+=", text) is None, page.name  # no onclick= and the like


async def test_the_api_documentation_page_gets_a_policy_of_its_own(
    admin: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _ = admin
    resp = await client.get("/docs")
    assert resp.status_code == 200
    policy = resp.headers["content-security-policy"]
    # Its one inline script is allowed by its hash, nothing else inline.
    assert "'sha256-" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert resp.headers["x-frame-options"] == "DENY"
    assert (await client.get("/redoc")).status_code == 404


async def test_user_names_are_unique_whatever_their_case(
    admin: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, headers = admin
    resp = await client.post(
        "/api/users", json={"name": "ADMIN", "role": "viewer"}, headers=headers
    )
    assert resp.status_code == 409
    assert resp.json()["detail"] == (
        "a user named 'admin' exists (names are unique whatever their case)"
    )
    resp = await client.post("/api/users", json={"name": "Olga", "role": "viewer"}, headers=headers)
    assert resp.status_code == 201
    resp = await client.post("/api/users", json={"name": "olga", "role": "viewer"}, headers=headers)
    assert resp.status_code == 409
    assert "'Olga'" in resp.json()["detail"]
    # Logging in ignores the case of the name; the session names the user as created.
    login = await client.post("/api/login", json={"name": "Admin", "password": "admin-password"})
    assert login.status_code == 200
    assert login.json()["name"] == "admin"


async def test_figures_that_are_not_finite_are_null(
    admin: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, _ = admin
    (item,) = (await client.get("/api/alerts")).json()["items"]
    assert item["estimated_kwh_lost"] is None
    stats = (await client.get("/api/stats/detectors")).json()
    assert stats["open_cases"][0]["estimated_kwh_lost"] is None
    assert stats["detectors"][0]["open_kwh"] is None
