"""What the API returns, kept apart from the storage models."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from api.i18n.summaries import summary_text
from meterguard.model import Alert, AlertKind, Meter, Severity
from meterguard.stores.records import AlertListing, CaseState
from meterguard.timefmt import rfc3339


class AlertOut(BaseModel):
    """An alert as the API shows it.

    The stream leaves out the case fields (acknowledged_by, acknowledged_at, assignee) of
    the engine's events, which do not know them: a client merges each event into what it
    holds.
    """

    id: str
    meter: str
    kind: AlertKind
    severity: Severity
    active: bool
    start: str = Field(description="RFC 3339 UTC, data time of the first reading showing it.")
    raised: str | None = Field(
        description=(
            "RFC 3339 UTC, data time of the reading at which it was raised (after its"
            " persistence): when an operator could first have seen it. Null when not known."
        )
    )
    end: str | None = Field(description="RFC 3339 UTC when it last held; null while open.")
    phase: int | None
    confidence: float
    estimated_kwh_lost: float | None = Field(
        description="Estimated energy lost, kWh; null when it is not a finite figure."
    )
    summary: str = Field(description="The summary in English, for machines.")
    summary_text: str = Field(
        description="The summary in the reader's language (docs/LANGUAGES.md), for people."
    )
    transformer: str | None = Field(default=None, description="The meter's transformer.")
    customer_class: str | None = Field(default=None, description="The meter's customer class.")
    acknowledged_by: str | None = None
    acknowledged_at: str | None = Field(default=None, description="RFC 3339 UTC.")
    assignee: str | None = None

    @classmethod
    def of(
        cls, alert: Alert | AlertListing, meter: Meter | None = None, language: str = "en"
    ) -> AlertOut:
        """Build the API view of an alert (summary_text in `language`), case fields and all."""
        case: dict[str, Any] = {}
        if isinstance(alert, AlertListing):
            case = {
                "acknowledged_by": alert.acknowledged_by,
                "acknowledged_at": _when(alert.acknowledged_at),
                "assignee": alert.assignee,
            }
        return cls(
            id=alert.id,
            meter=alert.meter,
            kind=alert.kind,
            severity=alert.severity,
            active=alert.active,
            start=rfc3339(alert.start),
            raised=_when(alert.raised),
            end=_when(alert.end),
            phase=alert.phase,
            confidence=alert.confidence,
            estimated_kwh_lost=finite(alert.estimated_kwh_lost),
            summary=alert.summary,
            summary_text=summary_text(alert, language),
            transformer=meter.transformer if meter else None,
            customer_class=meter.customer_class if meter else None,
            **case,
        )


def _when(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def finite(value: float | None) -> float | None:
    """Return a figure JSON can carry: inf and NaN become None (null, not known)."""
    # JSON has no inf or NaN: say "not known" openly rather than let the encoder decide.
    return value if value is not None and math.isfinite(value) else None


class CaseOutline(BaseModel):
    """The case fields of an alert, as the stream's `case` event carries them."""

    id: str
    acknowledged_by: str | None
    acknowledged_at: str | None = Field(description="RFC 3339 UTC.")
    assignee: str | None

    @classmethod
    def of(cls, state: CaseState) -> CaseOutline:
        """Build the stream's view of a case change."""
        return cls(
            id=state.alert_id,
            acknowledged_by=state.acknowledged_by,
            acknowledged_at=_when(state.acknowledged_at),
            assignee=state.assignee,
        )


class AlertDetail(AlertOut):
    """An alert with its evidence and history."""

    evidence: dict[str, Any]
    history: list[dict[str, Any]]


class AlertList(BaseModel):
    """A page of alerts."""

    items: list[AlertOut]
    count: int = Field(description="Alerts on this page.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class MeterOut(Meter):
    """A meter with its collector status (null when no source polls it)."""

    collector: dict[str, Any] | None = None
    clock_off_readings: int = Field(
        default=0,
        description="Readings of this meter refused for their time: its clock is wrong "
        "(ahead of the wall clock or of the fleet's data time, or reset).",
    )
    silent_detectors: dict[str, str] = Field(
        default_factory=dict,
        description="Detectors that cannot judge this meter from what it sends, and why "
        "(e.g. bypass without a measured neutral current).",
    )


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
