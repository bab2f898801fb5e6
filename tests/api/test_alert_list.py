"""The alert list: every filter, every sort, cursor paging and manual clears, over the real app."""

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.stores.alertdb.paging import encode_cursor
from meterguard.stores.records import AlertQuery, CaseState
from meterguard.timefmt import rfc3339

T0 = 1_767_225_600.0
KINDS = [AlertKind.BYPASS, AlertKind.REVERSAL, AlertKind.IMBALANCE, AlertKind.TAMPER]
SEVERE = AlertQuery(sort="severity")
RANK = {"warning": 1, "minor": 2, "major": 3, "critical": 4}


@dataclass
class Fixture:
    """The client, the users' headers and the alerts as the test made them."""

    client: httpx.AsyncClient
    headers: dict[str, dict[str, str]]
    alerts: list[dict[str, Any]]
    runtime: Runtime


def _meters() -> list[Meter]:
    # M1-M4 on T1, M5-M8 on T2; odd meters residential, even ones "Commercial".
    return [
        Meter(
            id=f"M{n}",
            service="3p4w",
            nominal_v=230,
            transformer="T1" if n <= 4 else "T2",
            customer_class="residential" if n % 2 else "Commercial",
        )
        for n in range(1, 9)
    ]


def _settings(data_dir: Path) -> Settings:
    return Settings(
        storage=StorageSettings(data_dir=data_dir),
        api=ApiSettings(anonymous_role=None),
        meters=_meters(),
    )


@dataclass
class Made:
    """The stores' folder as the module's fixture left it, and what it put there."""

    folder: Path
    headers: dict[str, dict[str, str]]
    alerts: list[dict[str, Any]]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """The stores, made once per module: each test gets a copy of its own (`listed`)."""
    folder = tmp_path_factory.mktemp("listed")
    headers, alerts = asyncio.run(_fill(folder))
    return Made(folder, headers, alerts)


@pytest.fixture
async def listed(made: Made, tmp_path: Path) -> AsyncIterator[Fixture]:
    """45 alerts with ties in start and loss, some cleared, acknowledged or assigned."""
    shutil.copytree(made.folder, tmp_path, dirs_exist_ok=True)
    settings = _settings(tmp_path)
    runtime = Runtime.open(settings)
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield Fixture(client, made.headers, [dict(a) for a in made.alerts], runtime)
    await runtime.close()


async def _fill(folder: Path) -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    """Create the users and the 45 alerts in the stores under folder; return what was made."""
    meters = _meters()
    runtime = Runtime.open(_settings(folder))
    headers = {}
    for name, role in (("olga", "operator"), ("vic", "viewer"), ("carl", "crew")):
        _, token = await runtime.users.create_user(name, role)
        headers[name] = {"Authorization": f"Bearer {token}"}
    rng = random.Random(7)
    store = runtime.alerts
    made: list[dict[str, Any]] = []
    active_pairs: set[tuple[str, AlertKind]] = set()
    for n in range(45):
        meter = rng.choice(meters)
        kind = rng.choice(KINDS)
        start = T0 + 600 * rng.randrange(20)  # shared starts: the id must break ties
        end = None
        if (meter.id, kind) in active_pairs or rng.random() < 0.3:
            end = start + 60 * rng.randrange(1, 30)
        else:
            active_pairs.add((meter.id, kind))
        alert = Alert(
            id=f"A{n:02d}",
            meter=meter.id,
            kind=kind,
            severity=rng.choice(list(Severity)),
            start=start,
            end=end,
            confidence=0.8,
            estimated_kwh_lost=float(rng.choice([0.0, 1.5, 2.5, 7.0, 12.25])),
            summary=f"alert {n}",
        )
        # A cleared alert goes in as it ended, beside the meter's active one of its kind.
        assert await store.apply(AlertEvent(type=AlertEventType.OPEN, ts=start, alert=alert))
        acked = rng.random() < 0.4
        if acked:
            await runtime.cases.acknowledge(alert.id, "olga")
        assignee = rng.choice([None, None, "carl", "cora"])
        if assignee:
            await runtime.cases.assign(alert.id, assignee, "olga")
        made.append(
            {
                "id": alert.id,
                "meter": meter.id,
                "transformer": meter.transformer,
                "class": meter.customer_class,
                "kind": kind.value,
                "severity": alert.severity.value,
                "start": start,
                "end": end,
                "kwh": alert.estimated_kwh_lost,
                "acknowledged": acked,
                "assignee": assignee,
            }
        )
    await runtime.close()
    return headers, made


def _key(sort: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if sort == "kwh":
        return lambda a: (a["kwh"], a["id"])
    if sort == "severity":
        return lambda a: (RANK[a["severity"]], a["kwh"], a["id"])
    return lambda a: (a["start"], a["id"])


async def _all_pages(fx: Fixture, params: dict[str, Any], limit: int) -> list[str]:
    """Follow next_cursor to the end; return the ids in the order the pages gave them."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page_params = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = await fx.client.get("/api/alerts", params=page_params, headers=fx.headers["vic"])
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert page["count"] == len(page["items"]) <= limit
        ids += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
        assert page["count"] == limit, "only the last page may be short"
    raise AssertionError("the cursor never ended")


FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({}, lambda a: True),
    ({"active": "true"}, lambda a: a["end"] is None),
    ({"active": "false"}, lambda a: a["end"] is not None),
    ({"acknowledged": "true"}, lambda a: a["acknowledged"]),
    ({"acknowledged": "false", "active": "true"}, lambda a: not a["acknowledged"] and not a["end"]),
    ({"assignee": "carl"}, lambda a: a["assignee"] == "carl"),
    ({"kind": ["bypass", "tamper"]}, lambda a: a["kind"] in ("bypass", "tamper")),
    ({"severity": "critical"}, lambda a: a["severity"] == "critical"),
    ({"severity": ["major", "minor"]}, lambda a: a["severity"] in ("major", "minor")),
    ({"meter": "M3"}, lambda a: a["meter"] == "M3"),
    ({"transformer": "T2"}, lambda a: a["transformer"] == "T2"),
    ({"class": "commercial"}, lambda a: a["class"] == "Commercial"),
    ({"transformer": "T1", "class": "RESIDENTIAL"}, lambda a: a["meter"] in ("M1", "M3")),
    ({"transformer": "T1", "meter": "M6"}, lambda a: False),
    # A time range keeps the alerts that held within it (cleared ones up to their end).
    (
        {"since": rfc3339(T0 + 6000), "until": str(T0 + 9000)},
        lambda a: (a["end"] is None or a["end"] >= T0 + 6000) and a["start"] <= T0 + 9000,
    ),
]


@pytest.mark.parametrize(("params", "keep"), FILTERS)
async def test_each_filter_keeps_exactly_the_matching_alerts(
    listed: Fixture, params: dict[str, Any], keep: Callable[[dict[str, Any]], bool]
) -> None:
    resp = await listed.client.get(
        "/api/alerts", params={**params, "limit": 1000}, headers=listed.headers["vic"]
    )
    assert resp.status_code == 200, resp.text
    got = resp.json()["items"]
    expected = sorted((a for a in listed.alerts if keep(a)), key=_key("start"), reverse=True)
    assert [a["id"] for a in got] == [a["id"] for a in expected]
    if params == {}:
        assert 0 < len(got) == len(listed.alerts)
    by_id = {a["id"]: a for a in listed.alerts}
    for item in got:
        made = by_id[item["id"]]
        assert item["transformer"] == made["transformer"]
        assert item["customer_class"] == made["class"]
        assert item["assignee"] == made["assignee"]
        assert (item["acknowledged_by"] == "olga") is made["acknowledged"]
        assert (item["acknowledged_at"] is not None) is made["acknowledged"]


@pytest.mark.parametrize("sort", ["start", "kwh", "severity"])
@pytest.mark.parametrize("direction", ["desc", "asc"])
async def test_cursor_pages_give_each_alert_once_in_sort_order(
    listed: Fixture, sort: str, direction: str
) -> None:
    params = {"sort": sort, "direction": direction}
    expected = sorted(listed.alerts, key=_key(sort), reverse=direction == "desc")
    assert await _all_pages(listed, params, limit=7) == [a["id"] for a in expected]
    # Filtered and paged: the filter holds across pages.
    params["active"] = "true"
    active = [a["id"] for a in expected if a["end"] is None]
    assert await _all_pages(listed, params, limit=4) == active


async def test_a_new_alert_does_not_shift_the_pages_already_read(listed: Fixture) -> None:
    first = (
        await listed.client.get(
            "/api/alerts", params={"sort": "kwh", "limit": 10}, headers=listed.headers["vic"]
        )
    ).json()
    # A bigger loss arrives between the pages: it sorts before the cursor, so the next
    # page neither repeats nor skips anything.
    big = Alert(
        id="Z-new",
        meter="M8",
        kind=AlertKind.CT_RATIO,
        severity=Severity.MAJOR,
        start=T0,
        confidence=0.9,
        estimated_kwh_lost=999.0,
        summary="new",
    )
    await listed.runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=T0, alert=big))
    second = (
        await listed.client.get(
            "/api/alerts",
            params={"sort": "kwh", "limit": 10, "cursor": first["next_cursor"]},
            headers=listed.headers["vic"],
        )
    ).json()
    expected = [a["id"] for a in sorted(listed.alerts, key=_key("kwh"), reverse=True)]
    assert [a["id"] for a in first["items"] + second["items"]] == expected[:20]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"transformer": "T9"}, "no meter is on transformer 'T9'"),
        ({"class": "industrial"}, "no meter has customer class 'industrial'"),
        ({"since": "yesterday"}, "since: not an RFC 3339 time"),
        ({"cursor": "not-a-cursor"}, "cursor: the cursor is not one this API made"),
        ({"sort": "loss"}, "'start', 'kwh' or 'severity'"),
        ({"since": "nan"}, "since: not a finite time"),
        ({"meter": "M1\x00"}, "NUL character"),
        # A cursor of this very query whose key no sort column can hold.
        ({"cursor": encode_cursor(AlertQuery(), (float("inf"), "A"))}, "not one this API made"),
        ({"cursor": encode_cursor(AlertQuery(), ("x", "A"))}, "not one this API made"),
        (
            {"sort": "severity", "cursor": encode_cursor(SEVERE, (9, 1.0, "A"))},
            "not one this API made",
        ),
        ({"severity": "huge"}, "'critical', 'major', 'minor' or 'warning'"),
    ],
)
async def test_bad_filters_are_422_with_a_clear_reason(
    listed: Fixture, params: dict[str, str], says: str
) -> None:
    resp = await listed.client.get("/api/alerts", params=params, headers=listed.headers["vic"])
    assert resp.status_code == 422
    assert says in resp.text


async def test_a_cursor_only_continues_its_own_query(listed: Fixture) -> None:
    page = (
        await listed.client.get(
            "/api/alerts", params={"sort": "kwh", "limit": 5}, headers=listed.headers["vic"]
        )
    ).json()
    cursor = page["next_cursor"]
    for other in (
        {"sort": "start"},
        {"sort": "kwh", "active": "true"},
        {"sort": "kwh", "since": "0"},
        {"direction": "asc"},
    ):
        resp = await listed.client.get(
            "/api/alerts", params={**other, "cursor": cursor}, headers=listed.headers["vic"]
        )
        assert resp.status_code == 422, other
        assert "another sort" in resp.text or "other filters" in resp.text


async def test_an_operator_clears_an_alert_with_a_reason(listed: Fixture) -> None:
    client, headers = listed.client, listed.headers
    target = next(a for a in listed.alerts if a["end"] is None)
    url = f"/api/alerts/{target['id']}/clear"
    assert (await client.post(url, json={"reason": "x"})).status_code == 401
    for name in ("vic", "carl"):
        refused = await client.post(url, json={"reason": "x"}, headers=headers[name])
        assert refused.status_code == 403
    for blank in ("", "   "):
        refused = await client.post(url, json={"reason": blank}, headers=headers["olga"])
        assert refused.status_code == 422
    done = await client.post(url, json={"reason": " meter replaced "}, headers=headers["olga"])
    assert done.status_code == 200
    body = done.json()
    assert body["active"] is False
    assert body["end"] == rfc3339(target["start"])  # it was last seen to hold at its start
    again = await client.post(url, json={"reason": "twice"}, headers=headers["olga"])
    assert again.status_code == 409
    missing = await client.post(
        "/api/alerts/nope/clear", json={"reason": "x"}, headers=headers["olga"]
    )
    assert missing.status_code == 404

    detail = (await client.get(f"/api/alerts/{target['id']}", headers=headers["vic"])).json()
    assert detail["evidence"]["cleared_by"]["manual"]["by"] == "olga"
    assert detail["evidence"]["cleared_by"]["manual"]["reason"] == "meter replaced"
    assert detail["history"][-1]["type"] == "clear"
    case = (await client.get(f"/api/alerts/{target['id']}/case", headers=headers["vic"])).json()
    clears = [e for e in case["audit"] if e["action"] == "clear"]
    assert [(e["actor"], e["detail"]["reason"]) for e in clears] == [("olga", "meter replaced")]
    still_active = (
        await client.get("/api/alerts", params={"active": "true"}, headers=headers["vic"])
    ).json()
    assert target["id"] not in {a["id"] for a in still_active["items"]}
    stats = (await client.get("/api/stats/detectors", headers=headers["vic"])).json()
    open_now = sum(1 for a in listed.alerts if a["end"] is None) - 1
    assert sum(row["open"] for row in stats["detectors"]) == open_now
    assert listed.runtime.counters.alerts_cleared_manually == 1
    metrics = (await client.get("/metrics")).text
    assert "meterguard_alerts_cleared_by_hand_total 1.0" in metrics.splitlines()


async def test_a_cursor_key_past_what_sqlite_holds_pages_instead_of_failing(
    listed: Fixture,
) -> None:
    # 10**30 does not fit a SQLite integer; as the float start it stands for, it sorts
    # after every alert, so the page after it (newest first) is the whole list.
    cursor = encode_cursor(AlertQuery(), (10**30, "A"))
    resp = await listed.client.get(
        "/api/alerts", params={"cursor": cursor, "limit": 1000}, headers=listed.headers["vic"]
    )
    assert resp.status_code == 200
    assert resp.json()["count"] == len(listed.alerts)


async def test_the_last_case_event_of_an_alert_carries_its_latest_state(
    listed: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, olga = listed.client, listed.headers["olga"]
    target = next(a for a in listed.alerts if not a["acknowledged"] and a["assignee"] is None)
    store = listed.runtime.alerts
    real_listing = store.listing
    slow_first = asyncio.Event()

    async def listing(alert_id: str) -> Any:
        found = await real_listing(alert_id)
        if not slow_first.is_set():
            # The acknowledgement's snapshot is read, then its request is slow to publish.
            slow_first.set()
            await asyncio.sleep(0.3)
        return found

    monkeypatch.setattr(store, "listing", listing)
    broadcaster = listed.runtime.broadcaster
    before = len(broadcaster.recent())

    async def assign_meanwhile() -> httpx.Response:
        await slow_first.wait()
        return await client.post(
            f"/api/alerts/{target['id']}/assign", json={"assignee": "carl"}, headers=olga
        )

    acked, assigned = await asyncio.gather(
        client.post(f"/api/alerts/{target['id']}/acknowledge", json={}, headers=olga),
        assign_meanwhile(),
    )
    assert (acked.status_code, assigned.status_code) == (200, 200)
    cases = [n.event for n in broadcaster.recent()[before:] if isinstance(n.event, CaseState)]
    assert len(cases) == 2
    assert (cases[-1].acknowledged_by, cases[-1].assignee) == ("olga", "carl")
