"""Meters: the fleet with each meter's collector status."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import RuntimeDep
from api.schemas import MeterList, MeterOut

router = APIRouter(prefix="/api/meters", tags=["meters"])


@router.get("", response_model=MeterList)
async def list_meters(runtime: RuntimeDep) -> MeterList:
    """List every registered meter."""
    items = []
    for meter in runtime.registry:
        status = runtime.status.get(meter.id)
        items.append(
            MeterOut(**meter.model_dump(), collector=None if status is None else status.as_dict())
        )
    return MeterList(items=items, count=len(items))
