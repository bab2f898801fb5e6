"""Tamper: meter-reported cover opening or magnetic field, and what it did to the readings."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
    CLEAR,
    HOLDS,
    P1_ROW,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    ewma_weight,
    format_duration,
    register,
)
from detectors.compiled import phase_sum_compiled
from detectors.context import BatchContext
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


def _judge(
    values: npt.NDArray[np.float64],
    ts: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    events: npt.NDArray[np.uint32],
    dt: npt.NDArray[np.float64],
    event_hold_s: float,
    cover_open: npt.NDArray[np.bool_],
    last_event: npt.NDArray[np.float64],
    usual_w: npt.NDArray[np.float64],
    holds: npt.NDArray[np.int8],
    phase: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Follow each meter's cover and field reports row by row and judge; compiled.

    Returns the meters with clean rows (no tamper, metered power known), with the data
    time those rows cover and their power times seconds, each summed from 0 in row order
    as np.bincount's sums are; the caller moves the usual power with them.
    """
    size = usual_w.shape[0]
    covered = np.zeros(size)
    sums = np.zeros(size)
    slots = np.empty(size, np.int64)
    for r in range(slot.shape[0]):
        s = slot[r]
        code = events[r]
        if code & (_OPENING | _MAGNET):
            last_event[s] = ts[r]
        # A close in the same interval as an opening: the opening came first.
        if code & _CLOSING:
            cover_open[s] = False
        elif code & _OPENING:
            cover_open[s] = True
        firing = cover_open[s] or ts[r] - last_event[s] <= event_hold_s
        metered = phase_sum_compiled(values, P1_ROW, r)
        usual = usual_w[s]
        if firing:
            drop_w = 0.0
            if math.isfinite(usual):
                gap = usual - metered
                drop_w = gap if (gap >= 0.0 or math.isnan(gap)) else 0.0
            drop = drop_w / usual if usual > 0 else 0.0
            share = min(max(drop, 0.0), 1.0) if not math.isnan(drop) else drop
            holds[r] = HOLDS
            loss[r] = drop_w
            # An event that changed the readings is stronger proof than the flag alone.
            score[r] = 0.6 + 0.4 * share
            magnitude[r] = share
        else:
            holds[r] = CLEAR
            if math.isfinite(metered):
                covered[s] += dt[r]
                sums[s] += metered * dt[r]
    k = 0
    for s in range(size):  # compacted in place: fewer array expressions, less to compile
        if covered[s] > 0:
            covered[k], sums[k], slots[k] = covered[s], sums[s], s
            k += 1
    return slots[:k], covered[:k], sums[:k]


_judge_compiled = cast(
    Callable[..., tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    numba.njit(cache=True)(_judge),
)


@register
class TamperDetector(Detector):
    """Holds from a cover opening until it closes, and for an hour after any opening or field."""

    name = "tamper"
    kind = AlertKind.TAMPER
    unmetered = True
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
        out = Conditions.none(len(batch))
        slots, covered, sums = _judge_compiled(
            batch.values,
            batch.ts,
            batch.slot,
            batch.events,
            ctx.dt,
            self.cfg.event_hold_s,
            self.cover_open,
            self.last_event,
            self.usual_w,
            *out.outputs(),
        )
        if slots.size:
            # The usual power moves towards the clean rows' mean by the time they cover.
            mean = sums / covered
            old = self.usual_w[slots]
            weight = ewma_weight(covered, self.cfg.usual_tau_s)
            self.usual_w[slots] = np.where(np.isfinite(old), old + weight * (mean - old), mean)
        return out

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
