"""The live stream, meter detail and series endpoints, over a real HTTP server."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from meterguard.broadcast import AlertBroadcaster, NumberedEvent, ResyncNeeded
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.api.serving import serving
from tests.conftest import make_batch


def _event(
    kind: AlertEventType,
    alert_id: str = "a1",
    end: float | None = None,
    raised: float | None = 1_767_225_900,
) -> AlertEvent:
    alert = Alert(
        id=alert_id,
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        raised=raised,
        end=end,
        phase=1,
        confidence=0.9,
        summary="x",
    )
    return AlertEvent(type=kind, ts=1_767_225_600, alert=alert)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Runtime]]:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    runtime = Runtime.open(settings)
    async with serving(create_app(settings, runtime)) as base:
        yield base, runtime
    await runtime.close()


async def _read_events(
    client: httpx.AsyncClient, url: str, want: int, headers: dict[str, str] | None = None
) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with client.stream("GET", url, headers=headers or {}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
                if len(events) >= want:
                    break
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return events


async def test_stream_pushes_events_and_resumes_after_last_id(served: tuple[str, Runtime]) -> None:
    base, runtime = served
    async with httpx.AsyncClient(timeout=10) as client:
        reader = asyncio.create_task(_read_events(client, f"{base}/api/stream", 2))
        while runtime.broadcaster.listeners == 0:
            await asyncio.sleep(0.02)
        runtime.broadcaster.publish(_event(AlertEventType.OPEN))
        runtime.broadcaster.publish(_event(AlertEventType.UPDATE, raised=None))
        first = await asyncio.wait_for(reader, 10)
        assert [e["event"] for e in first] == ["alert-open", "alert-update"]
        opened = json.loads(first[0]["data"])
        assert opened["meter"] == "M1"
        assert (opened["start"], opened["raised"]) == (
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:05:00Z",
        )
        # An event that does not know when the alert was raised leaves the field out, so a
        # client merging it keeps the one it holds.
        assert "raised" not in json.loads(first[1]["data"])
        # A reconnecting client quoting the first id gets exactly what followed it.
        runtime.broadcaster.publish(_event(AlertEventType.CLEAR, end=1_767_226_000))
        resumed = await asyncio.wait_for(
            _read_events(client, f"{base}/api/stream", 2, {"Last-Event-ID": first[0]["id"]}), 10
        )
        assert [e["event"] for e in resumed] == ["alert-update", "alert-clear"]
        assert json.loads(resumed[1]["data"])["active"] is False
        stale = await asyncio.wait_for(
            _read_events(client, f"{base}/api/stream", 1, {"Last-Event-ID": "otherprocess-3"}), 10
        )
        assert stale[0]["event"] == "resync"


async def test_broadcaster_ring_forgets_old_events() -> None:
    hub = AlertBroadcaster(keep=3)
    ids = [hub.publish(_event(AlertEventType.UPDATE)).id for _ in range(6)]
    listener = hub.listen(ids[0]).__aiter__()
    assert isinstance(await listener.__anext__(), ResyncNeeded)
    fresh = hub.listen(ids[3]).__aiter__()
    got = await fresh.__anext__()
    assert isinstance(got, NumberedEvent)
    assert got.id == ids[4]
    # A listener that falls behind further than the ring is told to reload.
    slow = hub.listen(ids[-1]).__aiter__()
    waiting = asyncio.ensure_future(slow.__anext__())
    await asyncio.sleep(0)
    for _ in range(5):
        hub.publish(_event(AlertEventType.UPDATE))
    # It slept through 5 events of which the ring kept 3: reload first, then the 3 kept.
    assert isinstance(await asyncio.wait_for(waiting, 5), ResyncNeeded)
    kept = [await slow.__anext__() for _ in range(3)]
    assert all(isinstance(e, NumberedEvent) for e in kept)


async def test_meter_detail_and_downsampled_series(served: tuple[str, Runtime]) -> None:
    base, runtime = served
    rows = [(1000.0 + 10 * k, 0, {"v1": 230.0 + k, "p1": float(k)}) for k in range(100)]
    batch = make_batch(rows)
    await runtime.series.write(batch)
    runtime.latest.update(batch)
    async with httpx.AsyncClient() as client:
        detail = (await client.get(f"{base}/api/meters/M1")).json()
        assert detail["latest"]["v1"] == 329.0
        assert detail["latest"]["ts"] == 1990.0
        assert detail["alerts"] == []
        series = (
            await client.get(
                f"{base}/api/meters/M1/series",
                params={
                    "fields": "v1,p1,i1",
                    "start": "1970-01-01T00:16:40Z",
                    "end": 1990,
                    "points": 10,
                },
            )
        ).json()
        assert len(series["ts"]) == 10
        assert series["values"]["v1"][0] == pytest.approx(234.5)  # mean of 230..239
        assert series["values"]["i1"] == [None] * 10
        missing = await client.get(f"{base}/api/meters/NOPE/series")
        assert missing.status_code == 404
        bad = await client.get(f"{base}/api/meters/M1/series", params={"fields": "volts"})
        assert bad.status_code == 422
        assert "volts" in bad.text
        backwards = await client.get(
            f"{base}/api/meters/M1/series", params={"start": 2000, "end": 1000}
        )
        assert backwards.status_code == 422
        bad_time = await client.get(f"{base}/api/meters/M1/series", params={"start": "noon"})
        assert bad_time.status_code == 422
        assert "start" in bad_time.text
        page = await client.get(f"{base}/alerts/anything")
        assert page.status_code == 200
        assert "alert.js" in page.text


async def test_case_changes_and_manual_clears_reach_the_stream(
    served: tuple[str, Runtime],
) -> None:
    base, runtime = served
    await runtime.alerts.apply(_event(AlertEventType.OPEN))
    _, token = await runtime.users.create_user("olga", "operator")
    olga = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as client:
        reader = asyncio.create_task(_read_events(client, f"{base}/api/stream", 4))
        while runtime.broadcaster.listeners == 0:
            await asyncio.sleep(0.02)
        assert await runtime.alerting.engine_event(_event(AlertEventType.UPDATE))
        acked = await client.post(f"{base}/api/alerts/a1/acknowledge", json={}, headers=olga)
        assert acked.status_code == 200
        assigned = await client.post(
            f"{base}/api/alerts/a1/assign", json={"assignee": "carl"}, headers=olga
        )
        assert assigned.status_code == 200
        cleared = await client.post(
            f"{base}/api/alerts/a1/clear", json={"reason": "known fault"}, headers=olga
        )
        assert cleared.status_code == 200
        events = await asyncio.wait_for(reader, 10)
    assert [e["event"] for e in events] == ["alert-update", "case", "case", "alert-clear"]
    update, ack, assign, clear = (json.loads(e["data"]) for e in events)
    # An engine event knows nothing of the case: the fields are absent, not null.
    assert "acknowledged_by" not in update
    assert "assignee" not in update
    assert (ack["id"], ack["acknowledged_by"], ack["assignee"]) == ("a1", "olga", None)
    assert ack["acknowledged_at"].endswith("Z")
    assert (assign["acknowledged_by"], assign["assignee"]) == ("olga", "carl")
    assert (clear["id"], clear["active"]) == ("a1", False)
    assert "acknowledged_by" not in clear  # a client keeps what the case events told it
