"""Health: is the service alive, and what has it seen."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

import meterguard
from api.deps import RuntimeDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(runtime: RuntimeDep) -> Health:
    """Liveness, with the collector summary and the running counters."""
    return Health(
        status="ok",
        version=meterguard.__version__,
        meters=len(runtime.registry),
        collector=runtime.status.summary(),
        counters=asdict(runtime.counters),
    )
