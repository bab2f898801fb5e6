"""Roles, tokens and the case work of operators and crews, over the real app and database."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.clock import ManualClock


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role=None),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    runtime = Runtime.open(settings)
    tokens = {}
    for name, role in [
        ("olga", "operator"),
        ("carl", "crew"),
        ("cora", "crew"),
        ("vic", "viewer"),
        ("ada", "admin"),
    ]:
        _, tokens[name] = await runtime.users.create_user(name, role)
    for n, kind in enumerate([AlertKind.BYPASS, AlertKind.REVERSAL]):
        alert = Alert(
            id=f"a{n}",
            meter="M1",
            kind=kind,
            severity=Severity.MAJOR,
            start=1_767_225_600 + n,
            confidence=0.9,
            estimated_kwh_lost=5.0 + 10 * n,
            summary="x",
        )
        await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1, alert=alert))
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, tokens
    await runtime.close()


def _as(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


async def test_tokens_and_roles_decide_access(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = setup
    missing = await client.get("/api/alerts")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.get("/api/alerts", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "invalid" in wrong.json()["detail"]
    assert (await client.get("/api/alerts", headers=_as(tokens, "vic"))).status_code == 200
    # The web pages carry the token in a cookie.
    cookie = await client.get("/api/me", headers={"Cookie": f"mg_token={tokens['olga']}"})
    assert cookie.json() == {
        "name": "olga",
        "role": "operator",
        "authenticated": True,
        "language": None,
    }
    forbidden = await client.post("/api/alerts/a0/acknowledge", headers=_as(tokens, "vic"))
    assert forbidden.status_code == 403
    assert "viewer may not" in forbidden.json()["detail"]
    assert (await client.get("/healthz")).status_code == 200  # probes stay open
    made = await client.post(
        "/api/users", json={"name": "newbie", "role": "crew"}, headers=_as(tokens, "ada")
    )
    assert made.status_code == 201
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert me.json()["role"] == "crew"
    again = await client.post(
        "/api/users", json={"name": "newbie", "role": "crew"}, headers=_as(tokens, "ada")
    )
    assert again.status_code == 409
    by_operator = await client.post(
        "/api/users", json={"name": "x", "role": "admin"}, headers=_as(tokens, "olga")
    )
    assert by_operator.status_code == 403


async def test_operator_and_crew_work_a_case_to_its_outcome(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = setup
    olga, carl, cora = _as(tokens, "olga"), _as(tokens, "carl"), _as(tokens, "cora")
    ack = await client.post("/api/alerts/a0/acknowledge", json={"note": "looking"}, headers=olga)
    assert ack.status_code == 200
    assert ack.json()["user"] == "olga"
    assert (
        await client.post("/api/alerts/a0/assign", json={"assignee": "carl"}, headers=olga)
    ).status_code == 200
    assert (await client.post("/api/alerts/nope/acknowledge", headers=olga)).status_code == 404
    bad = await client.post("/api/alerts/a0/comments", json={"text": ""}, headers=olga)
    assert bad.status_code == 422

    order = await client.post(
        "/api/work-orders",
        json={"alert_id": "a0", "instructions": "check the CT on phase 2", "assignee": "carl"},
        headers=olga,
    )
    assert order.status_code == 201
    wo = order.json()
    other = await client.post(
        "/api/work-orders", json={"alert_id": "a1", "assignee": "cora"}, headers=olga
    )
    assert other.status_code == 201
    assert (
        await client.post("/api/work-orders", json={"alert_id": "zz"}, headers=olga)
    ).status_code == 404
    assert (
        await client.post("/api/work-orders", json={"alert_id": "a0"}, headers=carl)
    ).status_code == 403

    # A crew member sees only their own orders, and may not touch another's.
    mine = (await client.get("/api/work-orders", headers=carl)).json()
    assert [o["id"] for o in mine["items"]] == [wo["id"]]
    assert (await client.get("/api/work-orders", headers=olga)).json()["count"] == 2
    theirs = await client.patch(
        f"/api/work-orders/{other.json()['id']}", json={"status": "done"}, headers=carl
    )
    assert theirs.status_code == 403
    reassign = await client.patch(
        f"/api/work-orders/{wo['id']}", json={"assignee": "cora"}, headers=carl
    )
    assert reassign.status_code == 403
    comment = await client.post(
        "/api/alerts/a0/comments", json={"text": "bypass jumper found on L2"}, headers=carl
    )
    assert comment.status_code == 200
    closed = await client.patch(
        f"/api/work-orders/{wo['id']}",
        json={"outcome": "theft_confirmed", "note": "jumper removed, photos taken"},
        headers=carl,
    )
    assert closed.status_code == 200
    assert closed.json()["status"] == "done"
    assert closed.json()["closed_by"] == "carl"
    nff = await client.patch(
        f"/api/work-orders/{other.json()['id']}", json={"outcome": "no_fault_found"}, headers=cora
    )
    assert nff.status_code == 200
    assert (
        await client.patch("/api/work-orders/999", json={"status": "done"}, headers=olga)
    ).status_code == 404

    stats = (await client.get("/api/stats/detectors", headers=olga)).json()
    assert stats["outcomes"] == {
        "bypass": {"theft_confirmed": 1},
        "reversal": {"no_fault_found": 1},
    }
    assert stats["precision"] == {"bypass": 1.0, "reversal": 0.0}

    case = (await client.get("/api/alerts/a0/case", headers=olga)).json()
    assert [a["user"] for a in case["acknowledgements"]] == ["olga"]
    assert [a["assignee"] for a in case["assignments"]] == ["carl"]
    assert [c["author"] for c in case["comments"]] == ["carl"]
    actions = [e["action"] for e in case["audit"]]
    for expected in ("acknowledge", "assign", "work_order_create", "comment", "work_order_update"):
        assert expected in actions
    assert {e["actor"] for e in case["audit"]} >= {"olga", "carl"}


async def test_cookie_alone_cannot_change_anything(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = setup
    cookie = {"Cookie": f"mg_token={tokens['olga']}"}
    # What a forged form post from another site would carry: the cookie, no header.
    forged = await client.post("/api/alerts/a0/acknowledge", headers=cookie)
    assert forged.status_code == 401
    case = await client.get("/api/alerts/a0/case", headers=cookie)
    assert case.status_code == 200
    assert case.json()["acknowledgements"] == []


async def test_crews_work_only_their_own_open_orders(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = setup
    olga, carl, cora = _as(tokens, "olga"), _as(tokens, "carl"), _as(tokens, "cora")
    wo = (
        await client.post(
            "/api/work-orders", json={"alert_id": "a0", "assignee": "carl"}, headers=olga
        )
    ).json()
    await client.post("/api/work-orders", json={"alert_id": "a1", "assignee": "cora"}, headers=olga)
    # Another crew's alert: no comments, no case view.
    assert (
        await client.post("/api/alerts/a1/comments", json={"text": "x"}, headers=carl)
    ).status_code == 403
    assert (await client.get("/api/alerts/a1/case", headers=carl)).status_code == 403
    own_case = (await client.get("/api/alerts/a0/case", headers=carl)).json()
    assert [o["assignee"] for o in own_case["work_orders"]] == ["carl"]
    assert all(
        e["actor"] in ("carl", "engine") or e["detail"].get("work_order") == wo["id"]
        for e in own_case["audit"]
    )
    cancel = await client.patch(
        f"/api/work-orders/{wo['id']}", json={"status": "cancelled"}, headers=carl
    )
    assert cancel.status_code == 403
    # "dispatched", the status before en route / on site existed, still means en route.
    onsite = await client.patch(
        f"/api/work-orders/{wo['id']}", json={"status": "dispatched"}, headers=carl
    )
    assert onsite.status_code == 200
    assert onsite.json()["status"] == "en_route"
    done = await client.patch(
        f"/api/work-orders/{wo['id']}", json={"outcome": "no_fault_found"}, headers=carl
    )
    assert done.status_code == 200
    rewrite = await client.patch(
        f"/api/work-orders/{wo['id']}", json={"outcome": "theft_confirmed"}, headers=carl
    )
    assert rewrite.status_code == 409
    assert cora  # the other crew's token exists; its own order is untouched
    orders = (await client.get("/api/work-orders", headers=olga)).json()["items"]
    assert {o["assignee"]: o["status"] for o in orders} == {"carl": "done", "cora": "open"}


async def test_crew_records_checklist_outcome_and_recovered_energy_and_stats_follow(
    setup: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = setup
    olga, carl = _as(tokens, "olga"), _as(tokens, "carl")
    bad_bodies: list[dict[str, object]] = [{}, {"alert_ids": []}, {"alert_ids": [""]}]
    for bad in bad_bodies:
        made = await client.post("/api/work-orders", json=bad, headers=olga)
        assert made.status_code == 422, bad
    missing = await client.post("/api/work-orders", json={"alert_ids": ["a0", "zz"]}, headers=olga)
    assert missing.status_code == 404
    assert (await client.get("/api/work-orders", headers=olga)).json()["count"] == 0
    made = await client.post(
        "/api/work-orders", json={"alert_ids": ["a1", "a0"], "assignee": "carl"}, headers=olga
    )
    assert made.status_code == 201
    order = made.json()
    assert (order["alert_id"], order["alert_ids"]) == ("a1", ["a1", "a0"])
    assert order["checklist"]["seals_intact"] == "not_checked"
    url = f"/api/work-orders/{order['id']}"
    # The order shows on both alerts' cases.
    for alert_id in ("a0", "a1"):
        case = (await client.get(f"/api/alerts/{alert_id}/case", headers=carl)).json()
        assert [o["id"] for o in case["work_orders"]] == [order["id"]]

    before = (await client.get("/api/stats/detectors", headers=olga)).json()
    assert before["detectors"] == [
        {
            "kind": k,
            "raised": 1,
            "confirmed": 0,
            "no_fault_found": 0,
            "precision": None,
            "open": 1,
            "open_kwh": kwh,
        }
        for k, kwh in (("bypass", 5.0), ("reversal", 15.0))
    ]
    assert [c["alert_id"] for c in before["open_cases"]] == ["a1", "a0"]
    top = (await client.get("/api/stats/detectors?open_cases=1", headers=olga)).json()
    assert [(c["alert_id"], c["estimated_kwh_lost"]) for c in top["open_cases"]] == [("a1", 15.0)]

    for status in ("en_route", "on_site"):
        moved = await client.patch(url, json={"status": status}, headers=carl)
        assert moved.json()["status"] == status
    checklist = {
        "seals_intact": "no",
        "wiring_correct": "no",
        "ct_ratio_fits_load": "yes",
        "overheating_or_loose_contacts": "not_checked",
        "neutral_and_earth_correct": "yes",
        "notes": "meter bypassed with a cable",
        "evidence": "photos 14-17",
    }
    ticked = await client.patch(url, json={"checklist": checklist}, headers=carl)
    assert ticked.status_code == 200
    assert ticked.json()["checklist"] == checklist
    assert ticked.json()["status"] == "on_site"
    for bad_change in (
        {"recovered_kwh": -1},
        {"checklist": {"seals_intact": "maybe"}},
        {"outcome": "no_fault_found", "outcome_method": "bypass"},
        {"outcome": "stolen"},
    ):
        refused = await client.patch(url, json=bad_change, headers=carl)
        assert refused.status_code == 422, bad_change
    closed = await client.patch(
        url,
        json={"outcome": "theft_confirmed", "outcome_method": "bypass", "recovered_kwh": 812.5},
        headers=carl,
    )
    assert closed.status_code == 200
    done = closed.json()
    assert (done["status"], done["outcome"], done["outcome_method"], done["recovered_kwh"]) == (
        "done",
        "theft_confirmed",
        "bypass",
        812.5,
    )
    assert done["checklist"] == checklist
    # Closed: the crew can no longer change it.
    again = await client.patch(url, json={"recovered_kwh": 1}, headers=carl)
    assert again.status_code == 409

    other = await client.post("/api/work-orders", json={"alert_id": "a0"}, headers=olga)
    nff = await client.patch(
        f"/api/work-orders/{other.json()['id']}", json={"outcome": "wiring_error"}, headers=olga
    )
    assert nff.json()["outcome"] == "wiring_error"
    after = (await client.get("/api/stats/detectors", headers=_as(tokens, "vic"))).json()
    rows = {r["kind"]: r for r in after["detectors"]}
    # bypass: one theft confirmed, one wiring error -> half; reversal: the one confirmed.
    assert rows["bypass"] == {
        "kind": "bypass",
        "raised": 1,
        "confirmed": 1,
        "no_fault_found": 0,
        "precision": 0.5,
        "open": 1,  # closing a work order does not clear the alert
        "open_kwh": 5.0,
    }
    assert rows["reversal"]["confirmed"] == 1
    assert rows["reversal"]["precision"] == 1.0


async def test_password_login_logout_and_expiry(tmp_path: Path) -> None:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role=None, token_hours=1.0),
    )
    clock = ManualClock()
    runtime = Runtime.open(settings, clock=clock)
    try:
        _, api_key = await runtime.users.create_user("olga", "operator", password="s3cret-pass")
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for name, password in (("olga", "wrong-pass"), ("nobody", "s3cret-pass")):
                refused = await client.post("/api/login", json={"name": name, "password": password})
                assert refused.status_code == 401
                assert "token" not in refused.json()
            made = await client.post("/api/login", json={"name": "olga", "password": "s3cret-pass"})
            assert made.status_code == 200
            session = made.json()
            assert (session["name"], session["role"]) == ("olga", "operator")
            assert session["expires_at"] == clock.now + 3600
            bearer = {"Authorization": f"Bearer {session['token']}"}
            assert (await client.get("/api/me", headers=bearer)).json()["name"] == "olga"

            # Logout revokes exactly the token it is called with.
            again = await client.post(
                "/api/login", json={"name": "olga", "password": "s3cret-pass"}
            )
            other = {"Authorization": f"Bearer {again.json()['token']}"}
            assert (await client.post("/api/logout", headers=other)).status_code == 204
            assert (await client.get("/api/me", headers=other)).status_code == 401
            assert (await client.post("/api/logout", headers=other)).status_code == 401
            assert (await client.post("/api/logout")).status_code == 401
            assert (await client.get("/api/me", headers=bearer)).status_code == 200

            clock.advance(3601)
            expired = await client.get("/api/me", headers=bearer)
            assert expired.status_code == 401
            assert "expired" in expired.json()["detail"]
            key = {"Authorization": f"Bearer {api_key}"}
            assert (await client.get("/api/me", headers=key)).status_code == 200  # no expiry
    finally:
        await runtime.close()
