"""Alerts: list and detail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.auth import Reader
from api.deps import RuntimeDep
from api.schemas import AlertDetail, AlertList, AlertOut
from meterguard.errors import AlertNotFoundError
from meterguard.model import AlertKind

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("", response_model=AlertList)
async def list_alerts(
    who: Reader,
    runtime: RuntimeDep,
    active: Annotated[bool | None, Query(description="true: open only; false: cleared")] = None,
    meter: Annotated[str | None, Query(max_length=200)] = None,
    kind: AlertKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """List alerts, newest first."""
    alerts = await runtime.alerts.list(active=active, meter=meter, kind=kind, limit=limit)
    return AlertList(items=[AlertOut.of(a) for a in alerts], count=len(alerts))


@router.get(
    "/{alert_id}", response_model=AlertDetail, responses={404: {"description": "No such alert"}}
)
async def get_alert(who: Reader, alert_id: str, runtime: RuntimeDep) -> AlertDetail:
    """Return one alert with its evidence and history."""
    try:
        alert = await runtime.alerts.get(alert_id)
    except AlertNotFoundError:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id!r}") from None
    history_of = getattr(runtime.alerts, "history", None)
    history = await history_of(alert_id) if history_of else []
    return AlertDetail(**AlertOut.of(alert).model_dump(), evidence=alert.evidence, history=history)
