"""Tips: an operator enters a report, it becomes a case, a work order, and a statistic."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from detectors.engine import Engine, build_detectors
from meterguard.model import Meter
from meterguard.runtime import Runtime
from tests.api.control_room import control_room as signed_in

Client = tuple[httpx.AsyncClient, dict[str, dict[str, str]], Runtime]
TIP = {
    "channel": "hotline",
    "meter": "M1",
    "text": "The neighbour's meter hardly turns but the shop runs two freezers all night.",
    "customer": "Li Wei",
    "address": "12 Elm Street",
    "reporter": "anonymous caller",
}


@pytest.fixture
async def control_room(tmp_path: Path) -> AsyncIterator[Client]:
    meters = [Meter(id="M1", service="1p2w", nominal_v=230, transformer="T1")]
    async with signed_in(tmp_path, meters) as (client, tokens, runtime):
        headers = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
        yield client, headers, runtime


async def test_a_tip_becomes_a_case_a_work_order_and_counts_in_the_statistics(
    control_room: Client,
) -> None:
    client, who, runtime = control_room
    entered = await client.post("/api/tips", json=TIP, headers=who["olga"])
    assert entered.status_code == 201, entered.text
    body = entered.json()
    assert body["new"] is True
    alert = body["alert"]
    assert (alert["kind"], alert["meter"], alert["active"]) == ("tip", "M1", True)
    assert alert["summary"].startswith("tip by hotline: The neighbour's meter")

    # On the board, and readable in the reader's language.
    board = await client.get("/api/alerts?kind=tip", headers=who["olga"])
    assert [a["id"] for a in board.json()["items"]] == [alert["id"]]
    zh = await client.get(
        f"/api/alerts/{alert['id']}", headers={**who["olga"], "Accept-Language": "zh-CN"}
    )
    assert zh.json()["summary_text"].startswith("来自服务热线的窃电举报：The neighbour")  # noqa: RUF001
    detail = zh.json()["evidence"]
    assert (detail["customer"], detail["address"], detail["entered_by"]) == (
        "Li Wei",
        "12 Elm Street",
        "olga",
    )
    case = (await client.get(f"/api/alerts/{alert['id']}/case", headers=who["olga"])).json()
    assert (case["audit"][0]["action"], case["audit"][0]["actor"]) == ("tip_open", "olga")

    # A second call about the same meter joins the open case.
    again = await client.post(
        "/api/tips", json={**TIP, "channel": "wechat", "text": "Cable under the pavement."},
        headers=who["olga"],
    )  # fmt: skip
    assert again.status_code == 200
    assert again.json() == {"alert": again.json()["alert"], "new": False}
    assert again.json()["alert"]["id"] == alert["id"]
    comments = (await client.get(f"/api/alerts/{alert['id']}/case", headers=who["olga"])).json()
    assert [c["text"] for c in comments["comments"]] == [
        "another tip by wechat (anonymous caller): Cable under the pavement."
    ]

    # A work order, a crew's outcome, and the tip channel judged like a detector.
    order = await client.post(
        "/api/work-orders",
        json={"alert_ids": [alert["id"]], "assignee": "carl", "instructions": "look"},
        headers=who["olga"],
    )
    assert order.status_code == 201, order.text
    done = await client.patch(
        f"/api/work-orders/{order.json()['id']}",
        json={"outcome": "theft_confirmed", "outcome_method": "meterless tap", "note": "found"},
        headers=who["carl"],
    )
    assert done.status_code == 200, done.text
    stats = (await client.get("/api/stats/detectors", headers=who["olga"])).json()
    row = next(r for r in stats["detectors"] if r["kind"] == "tip")
    assert (row["raised"], row["confirmed"], row["precision"]) == (1, 1, 1.0)
    # The detector engine leaves a tip alone: nothing of it comes back as its incident.
    engine = Engine(runtime.registry, build_detectors({}, runtime.registry))
    assert engine.restore(await runtime.alerts.list(active=True)) == 0


async def test_tips_are_checked_and_only_operators_enter_them(control_room: Client) -> None:
    client, who, _ = control_room
    for name in ("carl", "vic"):
        assert (await client.post("/api/tips", json=TIP, headers=who[name])).status_code == 403
    unknown = await client.post("/api/tips", json={**TIP, "meter": "M9"}, headers=who["olga"])
    assert unknown.status_code == 404
    assert "M9" in unknown.json()["detail"]
    for bad in ({"text": "   "}, {"channel": "pigeon"}, {"colour": "red"}, {"text": "x" * 5001}):
        reply = await client.post("/api/tips", json={**TIP, **bad}, headers=who["olga"])
        assert reply.status_code == 422, bad
    assert (await client.get("/api/alerts", headers=who["olga"])).json()["items"] == []
