"""The HTTP API over PostgreSQL: text PostgreSQL cannot hold is refused with a 422."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.stores.conftest import pg_url


@pytest.fixture
async def pg_api(pg_database: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    url = pg_url(pg_database, pg_database.rsplit("/", 1)[1])
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path, alert_db_url=url),
        api=ApiSettings(anonymous_role=None),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    runtime = Runtime.open(settings)
    _, token = await runtime.users.create_user(f"olga-{tmp_path.name}", "operator")
    alert = Alert(
        id=f"A-{tmp_path.name}",
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        confidence=0.9,
        summary="x",
    )
    await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1, alert=alert))
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        yield client, alert.id
    await runtime.close()


async def test_text_postgresql_cannot_hold_is_a_422_and_changes_nothing(
    pg_api: tuple[httpx.AsyncClient, str],
) -> None:
    client, alert_id = pg_api
    for path, body in (
        (f"/api/alerts/{alert_id}/comments", {"text": "seal \x00 broken"}),
        (f"/api/alerts/{alert_id}/clear", {"reason": "known \x00 fault"}),
        (f"/api/alerts/{alert_id}/assign", {"assignee": "crew\x001"}),
    ):
        refused = await client.post(path, json=body)
        assert refused.status_code == 422, (path, refused.text)
        assert "NUL character" in refused.json()["detail"][0]["msg"]
    case = (await client.get(f"/api/alerts/{alert_id}/case")).json()
    assert case["comments"] == []
    assert case["assignments"] == []
    assert (await client.get(f"/api/alerts/{alert_id}")).json()["active"] is True
    listed = await client.get("/api/alerts", params={"assignee": "crew\x001"})
    assert listed.status_code == 422
    # The same requests without the NUL go through.
    ok = await client.post(f"/api/alerts/{alert_id}/comments", json={"text": "seal broken"})
    assert ok.status_code == 200
