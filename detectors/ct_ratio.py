"""CT ratio: a current transformer whose typical load lies outside 30-100 % of its rating.

A CT is accurate near its rating: below 20 % of rated current the magnetising current
makes it read low (excitation error), above 120 % its core saturates and it reads low
again. The practice sizes a CT so that the long-term load lies within 30-100 % of its
rating. Each band outside that target is an alert of its own severity.

A CT's typical load is what its typical working day shows: each working day's percentile of
current, and the median of those over the working days. An overload that lasted a day (a
plant's special run, already an overload alert of its own) is one day among many, not the
CT's fit; a CT too small for its load is too small every day.
"""

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
    I1_ROW,
    P1_ROW,
    SEVERITY_LEVELS,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    SlotConditions,
    format_duration,
    register,
)
from detectors.compiled import nan_to_num_compiled, phase_sum_compiled
from detectors.context import BatchContext
from meterguard.calendar import HOUR_S, DayType
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity, SummaryMessage

_BIN = 0.02
_BINS = 101  # 0-2x rating in 2 % steps, the last bin holds everything above
DAY_S = 86_400.0
#: Working days whose percentiles are kept per meter (the median is taken over them).
_DAYS_KEPT = 28
#: A working day counts once this much of it was read, s.
_DAY_READ_S = 12 * 3600.0
#: The CT load bands a summary names, by the key its message carries.
BANDS = {
    "floor": "below the 20 % floor: excitation error",
    "low": "below the 30 % target",
    "saturation": "above 120 %: core saturation",
    "high": "above the rating",
    "within": "within the 30-100 % target",
}


def _percentile(hist: npt.NDArray[np.float64], percentile: float) -> npt.NDArray[np.float64]:
    """Return each histogram row's percentile, as a share of the rating (its bin's middle)."""
    cumulative = np.cumsum(hist, axis=1) / np.maximum(hist.sum(axis=1, keepdims=True), 1e-9)
    index = np.argmax(cumulative >= percentile / 100.0, axis=1)
    share: npt.NDArray[np.float64] = (index + 0.5) * _BIN
    return share


def _observe(
    values: npt.NDArray[np.float64],
    ts: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    dt: npt.NDArray[np.float64],
    weekday: npt.NDArray[np.bool_],
    rating: npt.NDArray[np.float64],
    first_seen: npt.NDArray[np.float64],
    hist: npt.NDArray[np.float64],
    observed_s: npt.NDArray[np.float64],
    sum_w: npt.NDArray[np.float64],
) -> None:
    """Add each CT meter's rows to its load histogram and totals; compiled.

    The service's load current is the mean of its measured phase currents (a lopsided
    customer's one heavy phase is its wiring, not the CT's fit). Histogram bins add in
    row order; a meter's totals are summed from 0 over its rows, then added (as
    np.bincount's sums are), so every figure is the numpy expression's.
    """
    size = observed_s.shape[0]
    seconds = np.zeros(size)
    energy = np.zeros(size)
    touched = np.zeros(size, np.bool_)
    for r in range(slot.shape[0]):
        s = slot[r]
        if not math.isfinite(rating[s]):
            continue
        measured = 0
        for k in range(3):
            if not math.isnan(values[I1_ROW + k, r]):
                measured += 1
        total = phase_sum_compiled(values, I1_ROW, r)
        if measured == 0 or not math.isfinite(total / measured):
            continue
        load = total / measured
        if math.isnan(first_seen[s]) or ts[r] < first_seen[s]:
            first_seen[s] = ts[r]
        if not weekday[r]:
            continue
        index = min(int(load / rating[s] / _BIN), _BINS - 1)
        hist[s, index] += dt[r]
        seconds[s] += dt[r]
        energy[s] += nan_to_num_compiled(phase_sum_compiled(values, P1_ROW, r)) * dt[r]
        touched[s] = True
    for s in range(size):
        if touched[s]:
            observed_s[s] += seconds[s]
            sum_w[s] += energy[s]


_observe_compiled = cast(Callable[..., None], numba.njit(cache=True)(_observe))


class CtRatioConfig(DetectorConfig):
    """Options of the CT-ratio detector."""

    raise_after_s: float = Field(default=0.0, ge=0, description="The days judged are persistence.")
    clear_after_s: float = Field(
        default=7 * DAY_S, ge=0, description="Raised once: it stays open for days."
    )
    update_every_s: float = Field(default=3600.0, gt=0, description="Between update events, s.")
    severity: Severity = Field(
        default=Severity.MINOR, description="Severity of a CT just outside its target band."
    )
    far_severity: Severity = Field(
        default=Severity.MAJOR,
        description="Severity below floor_ratio (excitation error) or above saturation_ratio.",
    )
    floor_ratio: float = Field(
        default=0.20, gt=0, description="Below this share of the rating the CT reads low."
    )
    low_ratio: float = Field(default=0.30, gt=0, description="Typical load below this fires.")
    high_ratio: float = Field(default=1.0, gt=0, description="Typical load above this fires.")
    saturation_ratio: float = Field(
        default=1.2, gt=0, description="Above this share of the rating the core saturates."
    )
    percentile: float = Field(
        default=95.0,
        gt=0,
        le=100,
        description="The percentile of a working day's current that is that day's load; the "
        "typical load is the median of these over the working days.",
    )
    min_days: float = Field(
        default=7.0,
        gt=0,
        description="Days of typical load (working days, holidays left out) before judging.",
    )
    judge_every_s: float = Field(default=3600.0, gt=0, description="Judge this often, s.")
    accuracy_loss: float = Field(
        default=0.02, ge=0, lt=1, description="Share of metered energy lost to CT error."
    )


@register
class CtRatioDetector(Detector):
    """Flags CT-connected meters whose typical load does not fit the CT rating.

    Keeps a histogram of each CT meter's load (mean phase current / CT rating) over the
    working day being read (weekends and public holidays are not typical load), takes its
    percentile when the day ends, and judges the median of those once enough days are seen.
    """

    name = "ct_ratio"
    kind = AlertKind.CT_RATIO
    config_model = CtRatioConfig
    needs = ("i1", "i2", "i3")
    requires = (("i1",),)

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, CtRatioConfig)
        self.cfg = config
        n = len(registry)
        # Billing meters only: a feeder check meter's CT error costs no bill.
        self.rating = registry.float_array(
            lambda m: m.ct_primary_a if m.role == "customer" else None
        )
        #: The histogram of the local day being read, and that day (proleptic ordinal).
        self.hist = np.zeros((n, _BINS))
        self.day = -1
        #: Each meter's last working days' percentiles (NaN: not yet), and how many it had.
        self.day_load = np.full((n, _DAYS_KEPT), np.nan)
        self.days_read = np.zeros(n, dtype=np.int64)
        self.observed_s = np.zeros(n)
        self.sum_w = np.zeros(n)
        self.first_seen = np.full(n, np.nan)
        self.next_judgement = -np.inf
        self.typical = np.full(n, np.nan)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Add the batch's CT meters' load on working days to their day's histograms."""
        if len(batch):
            hours = np.floor(batch.ts / HOUR_S).astype(np.int64)
            _, day_type = ctx.calendar.hours(hours)
            days = ctx.calendar.local_days(hours)
            weekday = day_type == DayType.WEEKDAY
            # A new local day closes the one before (the rows come in time order; a late
            # meter's last rows of the day before count with the new day's).
            for day in np.unique(days).tolist():
                if day > self.day:
                    self._close_day()
                    self.day = day
                rows = np.flatnonzero(days == day)
                part = slice(None) if rows.size == len(batch) else rows
                _observe_compiled(
                    batch.values[:, part],
                    batch.ts[part],
                    batch.slot[part],
                    ctx.dt[part],
                    weekday[part],
                    self.rating,
                    self.first_seen,
                    self.hist,
                    self.observed_s,
                    self.sum_w,
                )
        return Conditions.unknown(len(batch))

    def _close_day(self) -> None:
        """Keep the percentile of the day just read for each meter read enough of it."""
        read = self.hist.sum(axis=1)
        slots = np.flatnonzero(read >= _DAY_READ_S)
        if slots.size:
            self.day_load[slots, self.days_read[slots] % _DAYS_KEPT] = _percentile(
                self.hist[slots], self.cfg.percentile
            )
            self.days_read[slots] += 1
        self.hist[:] = 0.0

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Judge the meters seen long enough, every judge_every_s of data time."""
        cfg = self.cfg
        if ctx.now < self.next_judgement:
            return None
        self.next_judgement = ctx.now + cfg.judge_every_s
        ready = (self.observed_s >= cfg.min_days * DAY_S) & (self.days_read > 0)
        slots = np.flatnonzero(ready).astype(np.int32)
        if slots.size == 0:
            return None
        typical = np.nanmedian(self.day_load[slots], axis=1)
        self.typical[slots] = typical
        firing = (typical < cfg.low_ratio) | (typical > cfg.high_ratio)
        far = (typical < cfg.floor_ratio) | (typical > cfg.saturation_ratio)
        codes = (SEVERITY_LEVELS.index(cfg.far_severity), SEVERITY_LEVELS.index(cfg.severity))
        mean_w = self.sum_w[slots] / np.maximum(self.observed_s[slots], 1.0)
        k = slots.size
        off = np.where(typical < cfg.low_ratio, cfg.low_ratio - typical, typical - cfg.high_ratio)
        cond = Conditions(
            holds=np.where(firing, HOLDS, CLEAR).astype(np.int8),
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.where(firing, np.abs(mean_w) * cfg.accuracy_loss, 0.0),
            score=np.where(firing, np.clip(0.6 + off, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, typical, 0.0),
            # Its load has not fitted the CT since the meter was first read.
            onset=self.first_seen[slots],
            severity=np.where(far, codes[0], np.where(firing, codes[1], 0)).astype(np.int8),
        )
        return SlotConditions(slot=slots, conditions=cond, dt=np.full(k, cfg.judge_every_s))

    def _band_key(self, share: float) -> str:
        cfg = self.cfg
        if share < cfg.floor_ratio:
            return "floor"
        if share < cfg.low_ratio:
            return "low"
        if share > cfg.saturation_ratio:
            return "saturation"
        if share > cfg.high_ratio:
            return "high"
        return "within"

    def _band(self, share: float) -> str:
        return BANDS[self._band_key(share)]

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the typical load against the CT rating and its band."""
        share = float(np.nan_to_num(self.typical[slot]))
        return {
            "ct_primary_a": float(self.rating[slot]),
            "typical_load_share": round(share, 3),
            "band": self._band(share),
            "working_days_observed": round(float(self.observed_s[slot]) / DAY_S, 1),
            "working_days_judged": int(min(self.days_read[slot], _DAYS_KEPT)),
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the misfit."""
        return (
            f"typical load {facts.peak_magnitude:.0%} of the CT rating "
            f"({self._band(facts.peak_magnitude)}: metering accuracy lost), judged over "
            f"{format_duration(facts.duration_s)}"
        )

    def summary_message(self, facts: IncidentFacts) -> SummaryMessage:
        """Carry the band as a key, so that the reader's language names it."""
        message = super().summary_message(facts)
        return message.model_copy(
            update={"params": {**message.params, "band": self._band_key(facts.peak_magnitude)}}
        )
