"""A control room for API tests: an app on an embedded store, one user of each role."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from api.app import create_app
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings

#: The users every control room has, by role: an operator, a crew member and a viewer.
USERS = (("olga", "operator"), ("carl", "crew"), ("vic", "viewer"))


@asynccontextmanager
async def control_room(
    data_dir: Path, meters: list[Meter]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Runtime]]:
    """Yield a client of the app, each user's bearer token by name, and the runtime."""
    settings = Settings(
        storage=StorageSettings(data_dir=data_dir),
        api=ApiSettings(anonymous_role=None),
        meters=meters,
    )
    runtime = Runtime.open(settings)
    tokens = {}
    for name, role in USERS:
        _, tokens[name] = await runtime.users.create_user(name, role)
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, tokens, runtime
    finally:
        await runtime.close()


async def open_alert(runtime: Runtime, meter: str, kind: AlertKind, start: float) -> Alert:
    """Open an alert of a kind on a meter, as the engine would, raised an hour after start."""
    alert = Alert(
        id=f"{meter}-{kind.value}-{int(start)}",
        meter=meter,
        kind=kind,
        severity=Severity.MAJOR,
        start=start,
        raised=start + 3600,
        confidence=0.8,
        estimated_kwh_lost=12.0,
        summary=f"{kind.value} at {meter}",
        evidence={},
    )
    await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=alert.raised, alert=alert))
    return alert
