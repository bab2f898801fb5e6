"""The HTTP API over the real app and the embedded stores."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from tests.conftest import free_port


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[
            Meter(id="M1", service="3p4w", nominal_v=230),
            Meter(id="M2", service="1p2w", nominal_v=230, generation=True),
        ],
    )
    rt = Runtime.open(settings)
    yield rt
    await rt.close()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def _alert(alert_id: str, meter: str, start: float, end: float | None = None) -> Alert:
    return Alert(
        id=alert_id,
        meter=meter,
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=start,
        end=end,
        phase=2,
        confidence=0.8,
        estimated_kwh_lost=1.25,
        summary="phase 2 reversed",
        evidence={"onset": {"p2": -500.0}},
    )


async def test_alerts_list_filter_and_detail(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await runtime.alerts.apply(
        AlertEvent(type=AlertEventType.OPEN, ts=1, alert=_alert("a1", "M1", 1_767_225_600))
    )
    await runtime.alerts.apply(
        AlertEvent(type=AlertEventType.OPEN, ts=1, alert=_alert("a2", "M2", 1_767_225_660.5))
    )
    await runtime.alerts.apply(
        AlertEvent(
            type=AlertEventType.CLEAR,
            ts=2,
            alert=_alert("a2", "M2", 1_767_225_660.5, 1_767_226_000),
        )
    )
    body = (await client.get("/api/alerts")).json()
    assert body["count"] == 2
    assert [a["id"] for a in body["items"]] == ["a2", "a1"]
    assert body["items"][1]["start"] == "2026-01-01T00:00:00Z"
    assert body["items"][0]["start"] == "2026-01-01T00:01:00.500Z"
    active = (await client.get("/api/alerts", params={"active": "true"})).json()
    assert [a["id"] for a in active["items"]] == ["a1"]
    by_meter = (await client.get("/api/alerts", params={"meter": "M2"})).json()
    assert [a["id"] for a in by_meter["items"]] == ["a2"]
    assert not by_meter["items"][0]["active"]
    detail = (await client.get("/api/alerts/a2")).json()
    assert detail["evidence"] == {"onset": {"p2": -500.0}}
    assert [h["type"] for h in detail["history"]] == ["open", "clear"]


async def test_alerts_say_when_they_were_raised(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    raised = _alert("a1", "M1", 1_767_225_600).model_copy(update={"raised": 1_767_225_900})
    await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1_767_225_900, alert=raised))
    # An open that does not say when it was raised was raised by the reading it names.
    unsaid = _alert("a2", "M2", 1_767_225_660.5)
    await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1_767_226_020, alert=unsaid))
    rows = {a["id"]: a for a in (await client.get("/api/alerts")).json()["items"]}
    assert rows["a1"]["start"] == "2026-01-01T00:00:00Z"
    assert rows["a1"]["raised"] == "2026-01-01T00:05:00Z"
    assert rows["a2"]["raised"] == "2026-01-01T00:07:00Z"
    detail = (await client.get("/api/alerts/a1")).json()
    assert detail["raised"] == "2026-01-01T00:05:00Z"
    meter = (await client.get("/api/meters/M1")).json()
    assert [a["raised"] for a in meter["alerts"]] == ["2026-01-01T00:05:00Z"]
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("AlertOut", "AlertDetail"):
        field = schemas[name]["properties"]["raised"]
        assert {"type": "null"} in field["anyOf"]
        assert "raised" in schemas[name]["required"]


async def test_bad_requests_get_clear_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/alerts/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    bad_kind = await client.get("/api/alerts", params={"kind": "burglary"})
    assert bad_kind.status_code == 422
    bad_limit = await client.get("/api/alerts", params={"limit": 0})
    assert bad_limit.status_code == 422


async def test_meters_and_health(client: httpx.AsyncClient, runtime: Runtime) -> None:
    runtime.status.meter("M1", "gw1").readings = 3
    meters = (await client.get("/api/meters")).json()
    assert [m["id"] for m in meters["items"]] == ["M1", "M2"]
    assert meters["items"][0]["collector"]["source"] == "gw1"
    assert meters["items"][1]["collector"] is None
    assert meters["items"][1]["generation"]
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["meters"] == 2
    assert health["collector"] == {"polled": 1, "online": 0, "failing": 1}


async def test_board_page_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "alert board" in page.text
    script = await client.get("/static/board.js")
    assert script.status_code == 200
    assert "/api/alerts" in script.text


async def test_metrics_expose_counters_and_live_gauges(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    runtime.counters.readings_in = 1234
    runtime.counters.alerts_opened = 2
    runtime.counters.alert_events = 5
    ok = runtime.status.meter("M1", "gw1")
    ok.readings, ok.last_ok = 10, 1.0
    failing = runtime.status.meter("M2", "gw1")
    failing.errors, failing.consecutive_failures = 3, 3
    runtime.gauges["engine_queue_batches"] = lambda: 7
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "meterguard_readings_total 1234.0" in text
    assert 'meterguard_alert_events_total{type="open"} 2.0' in text
    assert 'meterguard_alert_events_total{type="update"} 3.0' in text
    assert 'meterguard_source_readings_total{source="gw1"} 10.0' in text
    assert 'meterguard_source_errors_total{source="gw1"} 3.0' in text
    assert 'meterguard_source_meters_online{source="gw1"} 1.0' in text
    assert "meterguard_engine_queue_batches 7.0" in text


async def test_readiness_reports_a_dead_store(
    client: httpx.AsyncClient, runtime: Runtime, tmp_path: Path
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    # A real store whose connection is gone stands in for a database that went away.
    dead = AlertDatabase(sqlite_url(tmp_path / "dead.sqlite"))
    await dead.close()
    live, runtime.alerts = runtime.alerts, dead.alerts
    try:
        broken = await client.get("/readyz")
    finally:
        runtime.alerts = live
    assert broken.status_code == 503
    assert broken.json()["checks"]["alert_store"].startswith("error")
    assert broken.json()["checks"]["series_store"] == "ok"


async def test_an_unreachable_series_server_is_a_503(tmp_path: Path) -> None:
    # InfluxDB configured where nothing listens: the series query cannot be answered.
    settings = Settings(
        storage=StorageSettings.model_validate(
            {
                "data_dir": tmp_path,
                "series_backend": "influxdb-v1",
                "influxdb": {"url": f"http://127.0.0.1:{free_port()}", "timeout_s": 2},
            }
        ),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    runtime = Runtime.open(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            resp = await client.get("/api/meters/M1/series", params={"fields": "v1"})
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "5"
        assert "unavailable" in resp.json()["detail"]
    finally:
        await runtime.close()


async def test_what_the_reading_checks_refused_is_shown(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    from service.supervisor import Service
    from tests.conftest import make_batch

    service = Service(runtime, sources=[])
    now = 1.78e9
    absurd = make_batch([(now, 0, {"v1": 1e308, "p1": -1e308})])
    service.validator.check(absurd, now)
    future = make_batch([(now + 5.5 * 3600, 1, {"v1": 230.0, "p1": 100.0})])
    assert len(service.validator.check(future, now)) == 0
    text = (await client.get("/metrics")).text
    assert 'meterguard_values_out_of_range_total{quantity="v1"} 1.0' in text
    assert 'meterguard_values_out_of_range_total{quantity="p1"} 1.0' in text
    assert 'meterguard_readings_refused_total{reason="clock_ahead"} 1.0' in text
    m2 = (await client.get("/api/meters/M2")).json()
    assert m2["clock_off_readings"] == 1
    assert (await client.get("/api/meters/M1")).json()["clock_off_readings"] == 0


async def test_a_meter_says_which_detectors_cannot_judge_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    from service.supervisor import Service
    from tests.conftest import make_batch

    service = Service(runtime, sources=[])
    service.engine.process(make_batch([(1.78e9, 0, {"v1": 230.0, "i1": 2.0, "p1": 440.0})]))
    silent = (await client.get("/api/meters/M1")).json()["silent_detectors"]
    assert silent["bypass"] == "silent: the meter never sent in"
    assert "reversal" not in silent
    assert (await client.get("/api/meters/M2")).json()["silent_detectors"] == {}
