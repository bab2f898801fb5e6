"""Tamper: meter-reported cover opening or magnetic field, and what it did to the readings."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from detectors.base import (
    CLEAR,
    HOLDS,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    ewma_weight,
    format_duration,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import (
    AlertKind,
    MeterEvent,
    MeterRegistry,
    ReadingBatch,
    Severity,
    SummaryMessage,
)

_OPENING = int(MeterEvent.COVER_OPEN | MeterEvent.TERMINAL_COVER_OPEN)
_CLOSING = int(MeterEvent.COVER_CLOSED | MeterEvent.TERMINAL_COVER_CLOSED)
_MAGNET = int(MeterEvent.MAGNETIC_FIELD)


class TamperConfig(DetectorConfig):
    """Options of the tamper detector."""

    raise_after_s: float = Field(default=0.0, ge=0, description="Events raise at once.")
    clear_after_s: float = Field(
        default=3900.0,
        ge=0,
        description="Quiet time after the cover closes or the magnet goes (longer than the "
        "hourly repeat of a magnetic-field log entry).",
    )
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    usual_tau_s: float = Field(
        default=1800.0, gt=0, description="Time constant of the usual power kept for evidence, s."
    )
    event_hold_s: float = Field(
        default=3600.0,
        ge=0,
        description="A cover opening or magnetic field holds this long (data time) after the "
        "meter reported it, even when the cover closed within the same interval (meters "
        "repeat a field's log entry hourly while it lasts).",
    )


#: The fall of metered power below which a summary says the readings were unchanged.
POWER_FELL = 0.05


@register
class TamperDetector(Detector):
    """Holds from a cover opening until it closes, and for an hour after any opening or field."""

    name = "tamper"
    kind = AlertKind.TAMPER
    config_model = TamperConfig
    needs = ("p1", "p2", "p3")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, TamperConfig)
        self.cfg = config
        n = len(registry)
        self.cover_open = np.zeros(n, dtype=np.bool_)
        #: Data time of each meter's latest cover opening or magnetic-field report.
        self.last_event = np.full(n, -np.inf)
        self.usual_w = np.full(n, np.nan)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Mark rows under an open cover or a magnetic field; learn the usual power otherwise."""
        n = len(batch)
        slot = batch.slot
        events = batch.events.astype(np.int64)
        open_now = self.cover_open[slot].copy()
        last_event = self.last_event[slot].copy()
        touched = np.flatnonzero(events & (_OPENING | _CLOSING | _MAGNET))
        if touched.size:
            # Tamper events are rare: follow each affected meter's rows in order.
            for meter in np.unique(slot[touched]).tolist():
                rows = np.flatnonzero(slot == meter)
                state = bool(self.cover_open[meter])
                latest = float(self.last_event[meter])
                for r in rows.tolist():
                    if events[r] & (_OPENING | _MAGNET):
                        latest = float(batch.ts[r])
                    # A close in the same interval as an opening: the opening came first.
                    if events[r] & _CLOSING:
                        state = False
                    elif events[r] & _OPENING:
                        state = True
                    open_now[r] = state
                    last_event[r] = latest
                self.cover_open[meter] = state
                self.last_event[meter] = latest
        firing = open_now | (batch.ts - last_event <= self.cfg.event_hold_s)
        holds = np.where(firing, HOLDS, CLEAR).astype(np.int8)
        metered = np.nansum(phase_block(batch, "p1"), axis=0)
        usual = self.usual_w[slot]
        drop_w = np.where(np.isfinite(usual), np.maximum(usual - metered, 0.0), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            drop = np.where(usual > 0, drop_w / usual, 0.0)
        self._learn(ctx, metered, ~firing, slot)
        return Conditions(
            holds=holds,
            phase=np.zeros(n, dtype=np.int8),
            loss_w=np.where(firing, drop_w, 0.0),
            # An event that changed the readings is stronger proof than the flag alone.
            score=np.where(firing, 0.6 + 0.4 * np.clip(drop, 0.0, 1.0), 0.0),
            magnitude=np.where(firing, np.clip(drop, 0.0, 1.0), 0.0),
        )

    def _learn(
        self,
        ctx: BatchContext,
        metered: np.ndarray[Any, np.dtype[np.float64]],
        clean: np.ndarray[Any, np.dtype[np.bool_]],
        slot: np.ndarray[Any, np.dtype[np.int32]],
    ) -> None:
        size = len(self.usual_w)
        ok = clean & np.isfinite(metered)
        seconds = np.where(ok, ctx.dt, 0.0)
        covered = np.bincount(slot, weights=seconds, minlength=size).astype(np.float64)
        touched = np.flatnonzero(covered > 0)
        if touched.size == 0:
            return
        sums = np.bincount(slot, weights=np.where(ok, metered, 0.0) * seconds, minlength=size)
        mean = sums[touched] / covered[touched]
        old = self.usual_w[touched]
        weight = ewma_weight(covered[touched], self.cfg.usual_tau_s)
        self.usual_w[touched] = np.where(np.isfinite(old), old + weight * (mean - old), mean)

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the usual power before the event and whether the cover is open."""
        usual = self.usual_w[slot]
        return {
            "usual_power_w": None if not np.isfinite(usual) else round(float(usual), 1),
            "cover_open": bool(self.cover_open[slot]),
            "last_event_ts": None
            if not np.isfinite(self.last_event[slot])
            else float(self.last_event[slot]),
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the tamper event and its effect on the readings."""
        effect = (
            f"metered power fell up to {facts.peak_magnitude:.0%}"
            if facts.peak_magnitude >= POWER_FELL
            else "readings unchanged"
        )
        return (
            f"meter reported cover opening or magnetic field; {effect}; "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )

    def summary_message(self, facts: IncidentFacts) -> SummaryMessage:
        """Name the variant the English summary takes: power fell, or readings unchanged."""
        message = super().summary_message(facts)
        if facts.peak_magnitude >= POWER_FELL:
            return message
        return message.model_copy(update={"key": "summary.tamper_unchanged"})
