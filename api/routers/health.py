"""Health: is the service alive, what has it seen, and how are its parts doing."""

from __future__ import annotations

import time
from dataclasses import asdict

from fastapi import APIRouter
from pydantic import BaseModel, Field

import meterguard
from api.deps import (
    AlertRepoDep,
    CountersDep,
    EngineActivityDep,
    RegistryDep,
    SeriesDep,
    SettingsDep,
    StatusDep,
)
from api.readiness import ServiceState, check_readiness
from api.schemas import Health
from meterguard.settings import Settings
from meterguard.status import SourceState
from meterguard.timefmt import rfc3339

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(registry: RegistryDep, status: StatusDep, counters: CountersDep) -> Health:
    """Liveness, with the collector summary and the running counters."""
    return Health(
        status="ok",
        version=meterguard.__version__,
        meters=len(registry),
        collector=status.summary(),
        counters=asdict(counters),
    )


class StoreHealthOut(BaseModel):
    """One store and whether it answered the check."""

    name: str = Field(description="alert_store (alerts and case work) or series_store.")
    backend: str = Field(
        description="sqlite or postgresql (alert store); sqlite, influxdb-v1 or influxdb-v2."
    )
    state: str = Field(description="ok, or error when it did not answer a trivial query.")
    error: str | None = Field(description="Why it did not answer; null when ok.")


class SourceHealthOut(BaseModel):
    """One collector source's state, as /readyz judges it."""

    name: str = Field(description="The source's name in the config.")
    kind: str | None = Field(description="modbus, mqtt or dlms; null if it never registered.")
    state: SourceState = Field(
        description="starting, running, standby (another process holds its gateway's "
        "lease: see [leases]), unreachable (its broker or gateway cannot be reached), failed "
        "(it raised; restarted after a backoff) or stopped. unreachable and failed make the "
        "service degraded."
    )
    reason: str | None = Field(description="Why it is unreachable or failed; null otherwise.")
    restarts: int = Field(description="Restarts after a failure since the service started.")
    meters_polled: int = Field(description="Meters this source has reported on.")
    meters_online: int = Field(description="Of those, meters whose latest read succeeded.")


class EngineHealthOut(BaseModel):
    """What the detector engine has taken in."""

    last_batch_at: str | None = Field(
        description="When (RFC 3339 UTC, wall clock) the engine last took a batch of "
        "readings; null before the first, and in a process that runs no engine."
    )
    last_batch_age_s: float | None = Field(
        description="Seconds since then, for a dashboard's threshold; null as above."
    )
    data_time: str | None = Field(
        description="The newest reading time (RFC 3339 UTC) the engine has judged: how far "
        "the data has come, against last_batch_at how late it arrives."
    )
    batches: int = Field(description="Batches taken in since start.")
    readings: int = Field(description="Readings taken in since start.")
    rest_days_found: list[str] = Field(
        description="Working days (local dates) taken as days of rest since start, once over, "
        "because the customers that rest on Sundays rested on them (a holiday the calendar "
        "lacks): add them to [calendar] extra_holidays. Empty in a process that runs no "
        "engine; each scale-out worker logs its own."
    )


class HealthSummary(BaseModel):
    """The service at a glance, for people and dashboards."""

    status: ServiceState = Field(
        description="As /readyz decides it: ok; degraded (the stores answer, a source is "
        "failed or unreachable); unavailable (a store does not answer)."
    )
    version: str
    checked_at: str = Field(description="When this was checked (RFC 3339 UTC).")
    check_ms: float = Field(description="How long the store checks took, ms.")
    meters: int = Field(description="Meters in the fleet.")
    stores: list[StoreHealthOut]
    sources: list[SourceHealthOut] = Field(description="Every source, by name.")
    engine: EngineHealthOut


def _alert_backend(settings: Settings) -> str:
    """Name the alert database's kind from its URL, never showing the URL itself."""
    url = settings.storage.alert_db_url
    return url.split(":", 1)[0].split("+", 1)[0] if url else "sqlite"


def _when(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


@router.get("/api/health", response_model=HealthSummary)
async def health_summary(
    settings: SettingsDep,
    registry: RegistryDep,
    status: StatusDep,
    counters: CountersDep,
    activity: EngineActivityDep,
    alerts: AlertRepoDep,
    series: SeriesDep,
) -> HealthSummary:
    """Overall state, each store and source, and the engine's last batch; needs no token.

    Always 200 while the process serves: the state is in the body. Probes that act on a
    status code use /readyz (503 unless ok) and /healthz (liveness).
    """
    found = await check_readiness(alerts, series, status)
    backends = {
        "alert_store": _alert_backend(settings),
        "series_store": settings.storage.series_backend,
    }
    stores = [
        StoreHealthOut(
            name=name,
            backend=backends[name],
            state="ok" if error is None else "error",
            error=error,
        )
        for name, error in found.store_errors.items()
    ]
    kinds = {entry.name: entry.kind for entry in status.sources()}
    sources = []
    for name, health in found.sources.items():
        meters = status.summary(name)
        sources.append(
            SourceHealthOut(
                name=name,
                kind=kinds.get(name),
                state=health.state,
                reason=health.reason,
                restarts=health.restarts,
                meters_polled=meters["polled"],
                meters_online=meters["online"],
            )
        )
    now = time.time()
    last = activity.last_batch_at
    return HealthSummary(
        status=found.status,
        version=meterguard.__version__,
        checked_at=rfc3339(now),
        check_ms=found.check_ms,
        meters=len(registry),
        stores=stores,
        sources=sources,
        engine=EngineHealthOut(
            last_batch_at=_when(last),
            last_batch_age_s=None if last is None else round(max(now - last, 0.0), 3),
            data_time=_when(activity.data_time),
            batches=counters.batches_in,
            readings=counters.readings_in,
            rest_days_found=[day.isoformat() for day in activity.rest_days_found],
        ),
    )
