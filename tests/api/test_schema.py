"""Schemathesis against the OpenAPI schema: no server error, no response outside the schema."""

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.conftest import make_batch


def _seeded_runtime(data_dir: Path) -> tuple[Runtime, str]:
    config = Settings(
        storage=StorageSettings(data_dir=data_dir),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    runtime = Runtime.open(config)
    alert = Alert(
        id="M1-reversal-1767225600",
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        phase=2,
        confidence=0.9,
        summary="phase 2 reversed",
        evidence={"onset": {"ts": 1_767_225_600.0}},
    )
    batch = make_batch(
        [(1_767_225_600.0 + 60 * k, 0, {"v1": 230.0, "p2": -500.0}) for k in range(30)]
    )

    async def seed() -> str:
        await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1, alert=alert))
        await runtime.series.write(batch)
        _, token = await runtime.alerts.create_user("admin", "admin")
        return token

    token = asyncio.run(seed())
    runtime.latest.update(batch)
    return runtime, token


# Schemathesis reads the schema while pytest collects, so the app is built at import.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="meterguard-schema-"))
_RUNTIME, _ADMIN_TOKEN = _seeded_runtime(_DATA_DIR)
# The stream never ends by design; logout would revoke the admin token every later case
# needs. Both have their own tests.
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", create_app(_RUNTIME.settings, _RUNTIME))
    .exclude(path="/api/stream")
    .exclude(path="/api/logout")
)


@pytest.fixture(scope="module", autouse=True)
def _close_runtime() -> Iterator[None]:
    yield
    asyncio.run(_RUNTIME.close())
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    # As admin, so that every operation gets past authorisation to its real work. Some
    # well-formed values are still refused with a 422 by design, as the schema cannot say
    # what they must name: a transformer or customer class of the fleet, a cursor this API
    # made, a series window whose start is before its end. Every other check runs.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {_ADMIN_TOKEN}"},
        excluded_checks=[positive_data_acceptance],
    )
