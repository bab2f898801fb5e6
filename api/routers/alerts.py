"""Alerts: the filtered, sorted and paged list, and one alert's detail."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.auth import Reader
from api.deps import AlertRepoDep, RegistryDep
from api.i18n.reader import ReaderLanguage
from api.params import time_param, time_schema
from api.schemas import AlertDetail, AlertList, AlertOut
from meterguard.errors import AlertNotFoundError
from meterguard.model import AlertKind, MeterRegistry, Severity
from meterguard.stores.alertdb.paging import CursorError, decode_cursor, encode_cursor
from meterguard.stores.records import AlertQuery, AlertSort, SortDirection

router = APIRouter(prefix="/api/alerts", tags=["alerts"])
TIME_HELP = "RFC 3339 or epoch s"


def meters_in_scope(
    registry: MeterRegistry,
    meter: str | None,
    transformer: str | None,
    customer_class: str | None,
) -> tuple[str, ...] | None:
    """Return the meters the meter, transformer and class filters leave (None: all).

    A transformer or class no meter has is a 422: a typo must not look like "no alerts".
    """
    if transformer is None and customer_class is None:
        return None if meter is None else (meter,)
    wanted_class = None if customer_class is None else customer_class.casefold()
    chosen = []
    seen_transformer = seen_class = False
    for m in registry:
        on_transformer = transformer is None or m.transformer == transformer
        in_class = wanted_class is None or (m.customer_class or "").casefold() == wanted_class
        seen_transformer |= transformer is not None and on_transformer
        seen_class |= wanted_class is not None and in_class
        if on_transformer and in_class and (meter is None or m.id == meter):
            chosen.append(m.id)
    if transformer is not None and not seen_transformer:
        raise HTTPException(status_code=422, detail=f"no meter is on transformer {transformer!r}")
    if customer_class is not None and not seen_class:
        raise HTTPException(
            status_code=422, detail=f"no meter has customer class {customer_class!r}"
        )
    return tuple(chosen)


@router.get("", response_model=AlertList, responses={422: {"description": "Bad filter or cursor"}})
async def list_alerts(
    who: Reader,
    language: ReaderLanguage,
    alerts: AlertRepoDep,
    registry: RegistryDep,
    active: Annotated[bool | None, Query(description="true: open only; false: cleared")] = None,
    acknowledged: Annotated[bool | None, Query(description="Acknowledged or not")] = None,
    assignee: Annotated[str | None, Query(max_length=100, description="Held by")] = None,
    kind: Annotated[list[AlertKind] | None, Query(description="Any of these kinds")] = None,
    severity: Annotated[list[Severity] | None, Query(description="Any of these severities")] = None,
    meter: Annotated[str | None, Query(max_length=200, description="Meter id")] = None,
    transformer: Annotated[
        str | None, Query(max_length=200, description="Meters on this transformer")
    ] = None,
    customer_class: Annotated[
        str | None,
        Query(alias="class", max_length=100, description="Class, any case"),
    ] = None,
    since: Annotated[
        str | None, Query(max_length=40, **time_schema(f"Held at or after ({TIME_HELP})"))
    ] = None,
    until: Annotated[
        str | None, Query(max_length=40, **time_schema(f"Started at or before ({TIME_HELP})"))
    ] = None,
    sort: Annotated[
        AlertSort,
        Query(description="start; kwh: estimated kWh lost; severity, then kWh lost"),
    ] = "start",
    direction: Annotated[SortDirection, Query(description="desc: newest/largest first")] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=500,
            description="next_cursor of the previous page, as the API gave it (another is a 422)",
        ),
    ] = None,
) -> AlertList:
    """List alerts filtered and sorted as asked, a page at a time (follow next_cursor)."""
    query = AlertQuery(
        active=active,
        acknowledged=acknowledged,
        assignee=assignee,
        kinds=tuple(kind or ()),
        severities=tuple(severity or ()),
        meters=meters_in_scope(registry, meter, transformer, customer_class),
        since=time_param(since, None, "since"),
        until=time_param(until, None, "until"),
        sort=sort,
        direction=direction,
    )
    if query.meters == ():
        return AlertList(items=[], count=0)
    if cursor is not None:
        try:
            query = dataclasses.replace(query, after=decode_cursor(query, cursor))
        except CursorError as exc:
            raise HTTPException(status_code=422, detail=f"cursor: {exc}") from None
    listings, last_key = await alerts.page(query, limit)
    return AlertList(
        items=[AlertOut.of(a, registry.get(a.meter), language) for a in listings],
        count=len(listings),
        next_cursor=None if last_key is None else encode_cursor(query, last_key),
    )


@router.get(
    "/{alert_id}", response_model=AlertDetail, responses={404: {"description": "No such alert"}}
)
async def get_alert(
    who: Reader,
    language: ReaderLanguage,
    alert_id: str,
    alerts: AlertRepoDep,
    registry: RegistryDep,
) -> AlertDetail:
    """Return one alert with its evidence, history and case fields."""
    try:
        alert, listing = await alerts.detail(alert_id)
    except AlertNotFoundError:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id!r}") from None
    history = await alerts.history(alert_id)
    out = AlertOut.of(listing, registry.get(alert.meter), language)
    return AlertDetail(**out.model_dump(), evidence=alert.evidence, history=history)
