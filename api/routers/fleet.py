"""The fleet's groupings: the transformers and customer classes alerts can be filtered by."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import RegistryDep

router = APIRouter(prefix="/api", tags=["meters"])


class FleetGroups(BaseModel):
    """What the alert list's transformer and class filters can take."""

    transformers: list[str] = Field(description="Transformer ids, sorted.")
    classes: list[str] = Field(description="Customer classes, sorted.")


@router.get("/fleet", response_model=FleetGroups)
async def fleet_groups(who: Reader, registry: RegistryDep) -> FleetGroups:
    """Return the transformers and customer classes of the registered meters."""
    meters = list(registry)
    return FleetGroups(
        transformers=sorted({m.transformer for m in meters if m.transformer}),
        classes=sorted({m.customer_class for m in meters if m.customer_class}),
    )
