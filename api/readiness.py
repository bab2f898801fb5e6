"""Readiness, decided once for /readyz and /api/health: do the stores answer, do sources deliver."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from meterguard.status import SourceHealth, StatusBoard
from meterguard.stores import SeriesStore
from meterguard.stores.repositories import AlertRepository

#: `ok`: the stores answer and no source is failed or unreachable; `degraded`: the stores
#: answer but a source cannot deliver; `unavailable`: a store does not answer.
ServiceState = Literal["ok", "degraded", "unavailable"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """What the readiness check found."""

    status: ServiceState
    #: Per store (alert_store, series_store): None when it answered, else why not.
    store_errors: dict[str, str | None]
    #: Each source's health by name, as the status board holds it.
    sources: dict[str, SourceHealth]
    check_ms: float

    @property
    def ready(self) -> bool:
        """True when nothing is wrong: a load balancer may send traffic here."""
        return self.status == "ok"


async def check_readiness(
    alerts: AlertRepository, series: SeriesStore, status_board: StatusBoard
) -> Readiness:
    """Ask both stores a trivial question and read every source's state."""
    started = time.monotonic()
    errors: dict[str, str | None] = {}
    try:
        await alerts.list(limit=1)
        errors["alert_store"] = None
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        errors["alert_store"] = str(exc) or type(exc).__name__
    try:
        await series.ping()
        errors["series_store"] = None
    except Exception as exc:  # as above
        errors["series_store"] = str(exc) or type(exc).__name__
    healths = status_board.healths()
    status: ServiceState = "ok"
    if any(error is not None for error in errors.values()):
        status = "unavailable"
    elif any(h.degraded for h in healths.values()):
        status = "degraded"
    check_ms = round((time.monotonic() - started) * 1000, 1)
    return Readiness(status, errors, healths, check_ms)
