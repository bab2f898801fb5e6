"""Transformers: a check meter against the sum of its customers by hour, and their alerts."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import AlertRepoDep, EngineActivityDep, RegistryDep, SeriesDep, SettingsDep
from api.i18n.reader import ReaderLanguage
from api.params import time_param, time_schema
from api.schemas import AlertOut, finite
from api.transformers import HOUR_S, MIN_COVERAGE, HourBalance, balance, window
from meterguard.losses import loss_terms
from meterguard.stores.records import AlertQuery
from meterguard.timefmt import rfc3339

router = APIRouter(prefix="/api/transformers", tags=["meters"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No meter on it"}}
#: Open alerts listed per transformer at most (a transformer has tens of meters).
MAX_OPEN_ALERTS = 1000


class HourOut(BaseModel):
    """One hour: the check meter's energy, its customers', the gap and the allowance (kWh)."""

    start: str = Field(description="RFC 3339 UTC, the hour's beginning.")
    ts: float = Field(description="The same as epoch seconds.")
    feeder_kwh: float | None = Field(description="The check meter; null: no reading.")
    customers_kwh: float | None = Field(
        description="The sum of the customers' meters; null: none sent a reading."
    )
    gap_kwh: float | None = Field(description="Check meter minus customers.")
    allowance_kwh: float | None = Field(description="Technical losses allowed.")
    excess_kwh: float | None = Field(description="The gap beyond the allowance.")
    complete: bool = Field(
        description=f"Every meter covered at least {MIN_COVERAGE:.0%} of the hour."
    )

    @classmethod
    def of(cls, row: HourBalance) -> HourOut:
        """Return the API view of an hour's balance."""
        return cls(
            start=rfc3339(row.start),
            ts=row.start,
            feeder_kwh=finite(row.feeder_kwh),
            customers_kwh=finite(row.customers_kwh),
            gap_kwh=finite(row.gap_kwh),
            allowance_kwh=finite(row.allowance_kwh),
            excess_kwh=finite(row.excess_kwh),
            complete=row.complete,
        )


class TransformerMeter(BaseModel):
    """A meter on the transformer, with its open alerts."""

    id: str
    role: str
    service: str
    customer_class: str | None
    open_alerts: list[AlertOut]


class Totals(BaseModel):
    """Sums over the complete hours (kWh)."""

    hours: int
    feeder_kwh: float | None
    customers_kwh: float
    gap_kwh: float | None
    allowance_kwh: float | None


class TransformerBalance(BaseModel):
    """A transformer's balance by hour, the loss terms it is judged by, and its meters."""

    transformer: str
    feeders: list[str] = Field(description="Its check meters (usually one; none: no balance).")
    start: str = Field(description="RFC 3339 UTC, the first hour's beginning.")
    end: str = Field(description="RFC 3339 UTC, the last hour's end.")
    loss_allowance: float = Field(description="Share of the check meter's energy allowed.")
    gap_margin: float = Field(
        description="Until the gap is learned, the share of the load one spread of it is taken as."
    )
    items: list[HourOut]
    totals: Totals
    meters: list[TransformerMeter]


def _totals(rows: list[HourBalance]) -> Totals:
    done = [r for r in rows if r.complete and r.feeder_kwh is not None]
    feeder = sum(r.feeder_kwh or 0.0 for r in done)
    customers = sum(r.customers_kwh or 0.0 for r in done)
    return Totals(
        hours=len(done),
        feeder_kwh=feeder if done else None,
        customers_kwh=customers,
        gap_kwh=feeder - customers if done else None,
        allowance_kwh=sum(r.allowance_kwh or 0.0 for r in done) if done else None,
    )


@router.get("/{transformer_id}/balance", response_model=TransformerBalance, responses=NOT_FOUND)
async def transformer_balance(
    transformer_id: Annotated[str, Path(min_length=1, max_length=200)],
    who: Reader,
    language: ReaderLanguage,
    registry: RegistryDep,
    series: SeriesDep,
    alerts: AlertRepoDep,
    settings: SettingsDep,
    activity: EngineActivityDep,
    hours: Annotated[int, Query(ge=1, le=24 * 31, description="Whole hours to show")] = 48,
    end: Annotated[
        str | None,
        Query(max_length=40, **time_schema("RFC 3339 or epoch s; default the newest data")),
    ] = None,
) -> TransformerBalance:
    """Return the check meter's energy against the sum of its customers by hour, and alerts.

    The hours end with the one holding `end` (default: the newest reading the engine has
    judged, or now). The allowance is `[detectors.energy_balance] loss_allowance`.
    """
    meters = [m for m in registry if m.transformer == transformer_id]
    if not meters:
        raise HTTPException(status_code=404, detail=f"no meter on transformer {transformer_id!r}")
    newest = activity.data_time if activity.data_time is not None else time.time()
    start = window(time_param(end, newest, "end"), hours)
    terms = loss_terms(settings.detectors)
    rows = await balance(series, meters, start, hours, terms)
    query = AlertQuery(active=True, meters=tuple(m.id for m in meters))
    listed, _ = await alerts.page(query, MAX_OPEN_ALERTS)
    by_meter: dict[str, list[AlertOut]] = {}
    for alert in listed:
        meter = registry.get(alert.meter)
        by_meter.setdefault(alert.meter, []).append(AlertOut.of(alert, meter, language))
    return TransformerBalance(
        transformer=transformer_id,
        feeders=[m.id for m in meters if m.role == "feeder"],
        start=rfc3339(start),
        end=rfc3339(start + hours * HOUR_S),
        loss_allowance=terms.loss_allowance,
        gap_margin=terms.gap_margin,
        items=[HourOut.of(r) for r in rows],
        totals=_totals(rows),
        meters=[
            TransformerMeter(
                id=m.id,
                role=m.role,
                service=m.service,
                customer_class=m.customer_class,
                open_alerts=by_meter.get(m.id, []),
            )
            for m in sorted(meters, key=lambda m: (m.role != "feeder", m.id))
        ],
    )
