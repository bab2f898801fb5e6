"""FastAPI dependencies: each router asks for the parts of the runtime it uses, by alias."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, cast

from fastapi import Depends, Request

from meterguard.alerting import AlertService
from meterguard.latest import LatestReadings
from meterguard.model import MeterRegistry
from meterguard.runtime import Counters, EngineActivity, Runtime
from meterguard.settings import Settings
from meterguard.status import StatusBoard
from meterguard.stores import SeriesStore
from meterguard.stores.photofiles import PhotoFiles
from meterguard.stores.repositories import (
    AlertRepository,
    CaseRepository,
    PhotoRepository,
    UserRepository,
)
from meterguard.validation import ValidationReport

#: Per meter id, the detectors that cannot judge it from what it sends, and why.
SilentDetectors = Callable[[str], dict[str, str]]


async def get_runtime(request: Request) -> Runtime:
    """Return the runtime the app was built with (or opened in its lifespan)."""
    return cast(Runtime, request.app.state.runtime)


#: The whole runtime: for the narrow dependencies below, and for /metrics, whose
#: exposition reports on every part of it.
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    """Return the settings the service runs with."""
    return runtime.settings


async def get_registry(runtime: RuntimeDep) -> MeterRegistry:
    """Return the fleet."""
    return runtime.registry


async def get_alert_service(runtime: RuntimeDep) -> AlertService:
    """Return the one path by which alert and case changes go out."""
    return runtime.alerting


async def get_alert_repository(runtime: RuntimeDep) -> AlertRepository:
    """Return the alert repository (reads, and the readiness check)."""
    return runtime.alerts


async def get_case_repository(runtime: RuntimeDep) -> CaseRepository:
    """Return the case and work-order repository."""
    return runtime.cases


async def get_user_repository(runtime: RuntimeDep) -> UserRepository:
    """Return the user and token repository."""
    return runtime.users


async def get_photo_repository(runtime: RuntimeDep) -> PhotoRepository:
    """Return the photo records."""
    return runtime.photos


async def get_photo_files(runtime: RuntimeDep) -> PhotoFiles:
    """Return the photo store (the bytes, by SHA-256)."""
    return runtime.photo_files


async def get_series(runtime: RuntimeDep) -> SeriesStore:
    """Return the series store."""
    return runtime.series


async def get_latest(runtime: RuntimeDep) -> LatestReadings:
    """Return the latest reading of each meter."""
    return runtime.latest


async def get_status(runtime: RuntimeDep) -> StatusBoard:
    """Return the collector status board (sources and meters)."""
    return runtime.status


async def get_counters(runtime: RuntimeDep) -> Counters:
    """Return the running totals."""
    return runtime.counters


async def get_engine_activity(runtime: RuntimeDep) -> EngineActivity:
    """Return when the engine last took a batch."""
    return runtime.engine_activity


async def get_validation(runtime: RuntimeDep) -> ValidationReport:
    """Return what the reading checks blanked and refused."""
    return runtime.validation


async def get_silent_detectors(runtime: RuntimeDep) -> SilentDetectors:
    """Return the silent detectors of a meter (none in a process that runs no engine)."""
    return runtime.silent_detectors or _none_silent


def _none_silent(meter_id: str) -> dict[str, str]:
    return {}


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[MeterRegistry, Depends(get_registry)]
AlertServiceDep = Annotated[AlertService, Depends(get_alert_service)]
AlertRepoDep = Annotated[AlertRepository, Depends(get_alert_repository)]
CaseRepoDep = Annotated[CaseRepository, Depends(get_case_repository)]
UserRepoDep = Annotated[UserRepository, Depends(get_user_repository)]
PhotoRepoDep = Annotated[PhotoRepository, Depends(get_photo_repository)]
PhotoFilesDep = Annotated[PhotoFiles, Depends(get_photo_files)]
SeriesDep = Annotated[SeriesStore, Depends(get_series)]
LatestDep = Annotated[LatestReadings, Depends(get_latest)]
StatusDep = Annotated[StatusBoard, Depends(get_status)]
CountersDep = Annotated[Counters, Depends(get_counters)]
EngineActivityDep = Annotated[EngineActivity, Depends(get_engine_activity)]
ValidationDep = Annotated[ValidationReport, Depends(get_validation)]
SilentDetectorsDep = Annotated[SilentDetectors, Depends(get_silent_detectors)]
