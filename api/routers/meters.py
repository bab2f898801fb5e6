"""Meters: the fleet, one meter's detail, and its readings over a window."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from api.auth import Reader
from api.deps import (
    AlertRepoDep,
    LatestDep,
    RegistryDep,
    SeriesDep,
    SilentDetectors,
    SilentDetectorsDep,
    StatusDep,
    ValidationDep,
)
from api.i18n.reader import ReaderLanguage
from api.params import time_param, time_schema
from api.schemas import AlertOut, MeterDetail, MeterList, MeterOut, SeriesOut
from meterguard.model import QUANTITIES, Meter, MeterRegistry
from meterguard.status import StatusBoard
from meterguard.timefmt import rfc3339
from meterguard.validation import ValidationReport

router = APIRouter(prefix="/api/meters", tags=["meters"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such meter"}}
_QUANTITY = "(?:" + "|".join(QUANTITIES) + ")"
#: Exactly what `fields` takes: known quantities, comma-separated, spaces around them.
FIELDS_PATTERN = f"^[ \t]*{_QUANTITY}[ \t]*(?:,[ \t]*{_QUANTITY}[ \t]*)*$"


def _meter(registry: MeterRegistry, meter_id: str) -> Meter:
    meter = registry.get(meter_id)
    if meter is None:
        raise HTTPException(status_code=404, detail=f"no meter {meter_id!r}")
    return meter


@dataclass(frozen=True, slots=True)
class MeterViews:
    """What the service knows of each meter beside its profile."""

    status: StatusBoard
    validation: ValidationReport
    silent: SilentDetectors

    def out(self, meter: Meter) -> MeterOut:
        """Return a meter with its collector status, clock problems and silent detectors."""
        status = self.status.get(meter.id)
        return MeterOut(
            **meter.model_dump(),
            collector=None if status is None else status.as_dict(),
            clock_off_readings=self.validation.clock_off.get(meter.id, 0),
            silent_detectors=self.silent(meter.id),
        )


async def meter_views(
    status: StatusDep, validation: ValidationDep, silent: SilentDetectorsDep
) -> MeterViews:
    """Bundle the views a meter's answer draws on."""
    return MeterViews(status, validation, silent)


MeterViewsDep = Annotated[MeterViews, Depends(meter_views)]


@router.get("", response_model=MeterList)
async def list_meters(
    who: Reader,
    registry: RegistryDep,
    views: MeterViewsDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Id or transformer contains")
    ] = None,
    transformer: Annotated[str | None, Query(max_length=200)] = None,
) -> MeterList:
    """List registered meters, optionally searched by id/transformer text."""
    items = []
    needle = (q or "").lower()
    for meter in registry:
        if transformer is not None and meter.transformer != transformer:
            continue
        if (
            needle
            and needle not in meter.id.lower()
            and needle not in (meter.transformer or "").lower()
        ):
            continue
        items.append(views.out(meter))
    return MeterList(items=items, count=len(items))


@router.get("/{meter_id}", response_model=MeterDetail, responses=NOT_FOUND)
async def get_meter(
    who: Reader,
    language: ReaderLanguage,
    meter_id: str,
    registry: RegistryDep,
    views: MeterViewsDep,
    alerts: AlertRepoDep,
    readings: LatestDep,
) -> MeterDetail:
    """Return a meter's profile, collector status, latest reading and recent alerts."""
    meter = _meter(registry, meter_id)
    recent = await alerts.list(meter=meter.id, limit=50)
    latest = readings.of(registry.slot(meter.id))
    return MeterDetail(
        **views.out(meter).model_dump(),
        latest=latest,
        latest_at=None if latest is None else rfc3339(latest["ts"]),
        alerts=[AlertOut.of(a, meter, language) for a in recent],
    )


@router.get("/{meter_id}/series", response_model=SeriesOut, responses=NOT_FOUND)
async def get_series(
    who: Reader,
    meter_id: str,
    registry: RegistryDep,
    series_store: SeriesDep,
    fields: Annotated[
        str,
        Query(
            max_length=200,
            description="Comma-separated quantities, e.g. v1,v2,v3",
            json_schema_extra={"pattern": FIELDS_PATTERN},
        ),
    ] = "v1,v2,v3,i1,i2,i3,p1,p2,p3",
    start: Annotated[
        str | None, Query(max_length=40, **time_schema("RFC 3339 or epoch s; default end-6h"))
    ] = None,
    end: Annotated[
        str | None, Query(max_length=40, **time_schema("RFC 3339 or epoch s; default now"))
    ] = None,
    points: Annotated[int, Query(ge=1, le=5000, description="At most this many points")] = 500,
) -> SeriesOut:
    """Return a meter's quantities over a window, averaged down to at most `points` points."""
    meter = _meter(registry, meter_id)
    wanted = [f.strip(" \t") for f in fields.split(",")]
    unknown = [f for f in wanted if f not in QUANTITIES]
    if unknown:
        raise HTTPException(
            status_code=422,
            detail=f"unknown quantities {unknown}; known: {', '.join(QUANTITIES)}",
        )
    t_end = time_param(end, time.time(), "end")
    t_start = time_param(start, t_end - 6 * 3600, "start")
    if not (math.isfinite(t_start) and math.isfinite(t_end)) or t_start > t_end:
        raise HTTPException(status_code=422, detail="start must be a time before end")
    # The store averages into buckets itself (SQL GROUP BY, InfluxQL GROUP BY time).
    series = await series_store.query(meter.id, t_start, t_end, wanted, points)
    return SeriesOut(
        meter=meter.id,
        ts=series.ts.tolist(),
        values={
            k: [None if math.isnan(x) else x for x in v.tolist()] for k, v in series.values.items()
        },
    )
