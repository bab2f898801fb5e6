"""What the API returns, kept apart from the storage models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from meterguard.model import Alert, AlertKind, Meter, Severity
from meterguard.timefmt import rfc3339


class AlertOut(BaseModel):
    """An alert as the API shows it."""

    id: str
    meter: str
    kind: AlertKind
    severity: Severity
    active: bool
    start: str = Field(description="RFC 3339 UTC, data time of the first reading showing it.")
    end: str | None = Field(description="RFC 3339 UTC when it last held; null while open.")
    phase: int | None
    confidence: float
    estimated_kwh_lost: float
    summary: str

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        """Build the API view of an alert."""
        return cls(
            id=alert.id,
            meter=alert.meter,
            kind=alert.kind,
            severity=alert.severity,
            active=alert.active,
            start=rfc3339(alert.start),
            end=None if alert.end is None else rfc3339(alert.end),
            phase=alert.phase,
            confidence=alert.confidence,
            estimated_kwh_lost=alert.estimated_kwh_lost,
            summary=alert.summary,
        )


class AlertDetail(AlertOut):
    """An alert with its evidence and history."""

    evidence: dict[str, Any]
    history: list[dict[str, Any]]


class AlertList(BaseModel):
    """A page of alerts."""

    items: list[AlertOut]
    count: int


class MeterOut(Meter):
    """A meter with its collector status (null when no source polls it)."""

    collector: dict[str, Any] | None = None


class MeterDetail(MeterOut):
    """A meter with its latest reading and recent alerts."""

    latest: dict[str, float] | None = Field(description="Latest value of each quantity.")
    latest_at: str | None
    alerts: list[AlertOut]


class SeriesOut(BaseModel):
    """A meter's quantities over a window: one time column, one column per quantity."""

    meter: str
    ts: list[float] = Field(description="Epoch seconds.")
    values: dict[str, list[float | None]] = Field(description="null: not measured.")


class MeterList(BaseModel):
    """The fleet."""

    items: list[MeterOut]
    count: int


class Health(BaseModel):
    """Liveness and the basic counters."""

    status: str
    version: str
    meters: int
    collector: dict[str, int]
    counters: dict[str, int]
