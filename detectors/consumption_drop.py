"""Consumption drop: hourly consumption falls against the meter's own hour-of-day baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from detectors.base import (
    CLEAR,
    HOLDS,
    UNKNOWN,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    SlotConditions,
    format_duration,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

HOUR_S = 3600.0


class ConsumptionDropConfig(DetectorConfig):
    """Options of the consumption-drop detector."""

    raise_after_s: float = Field(default=0.0, ge=0, description="Hours judged are persistence.")
    clear_after_s: float = Field(default=3 * HOUR_S, ge=0, description="Absence before clearing.")
    severity: Severity = Field(default=Severity.MINOR, description="Severity of its alerts.")
    drop_ratio: float = Field(
        default=0.8, gt=0, lt=1, description="Consumption below this share of baseline fires."
    )
    idle_ratio: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Below this share the load is idle (shutdown, holiday): not this detector.",
    )
    window_hours: int = Field(default=3, ge=1, le=24, description="Hours judged together.")
    min_baseline_w: float = Field(
        default=100.0, ge=0, description="Hours whose baseline is below this, W, are not judged."
    )
    learn_rate: float = Field(
        default=0.3, gt=0, le=1, description="Weight of a new day in the hour-of-day baseline."
    )
    warmup_days: int = Field(
        default=1, ge=1, description="Days each hour of the day must be seen before judging."
    )


@register
class ConsumptionDropDetector(Detector):
    """Flags a sustained proportional fall of consumption against its own history.

    Keeps a per-meter baseline per hour of day; at each hour's end judges the recent hours:
    a proportional fall that keeps the daily shape fires, a fall to a flat idle does not.
    """

    name = "consumption_drop"
    kind = AlertKind.CONSUMPTION_DROP
    config_model = ConsumptionDropConfig
    needs = ("p1", "p2", "p3", "v1", "v2", "v3")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, ConsumptionDropConfig)
        self.cfg = config
        n = len(registry)
        w = config.window_hours
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and not m.generation)
        self.base = np.zeros((n, 24))
        self.days_seen = np.zeros((n, 24), dtype=np.int32)
        self.hour = np.full(n, -1, dtype=np.int64)
        self.sum_w = np.zeros(n)
        self.count = np.zeros(n)
        self.recent_metered = np.full((n, w), np.nan)
        self.recent_base = np.full((n, w), np.nan)
        self.low_since = np.full(n, np.nan)
        self.verdict = np.full(n, UNKNOWN, dtype=np.int8)
        self.pending = np.zeros(n, dtype=np.bool_)
        self.last_ratio = np.full(n, np.nan)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Accumulate each meter's hourly consumption; close hours as data time passes them."""
        slot = batch.slot
        power = np.nansum(phase_block(batch, "p1"), axis=0)
        volts = phase_block(batch, "v1")
        ref = ctx.fleet.ref_v[slot]
        measured = np.isfinite(phase_block(batch, "p1")).any(axis=0)
        # Readings during an outage say nothing about the customer's consumption.
        supplied = (np.nan_to_num(volts) >= 0.5 * ref).any(axis=0)
        ok = self._eligible[slot] & measured & supplied
        hours = np.floor(batch.ts / HOUR_S).astype(np.int64)
        for hour in np.unique(hours[ok]).tolist():
            rows = ok & (hours == hour)
            meters = np.unique(slot[rows])
            closing = meters[(self.hour[meters] >= 0) & (self.hour[meters] < hour)]
            if closing.size:
                self._close(closing)
            fresh = meters[self.hour[meters] < hour]
            self.hour[fresh] = hour
            size = len(self.hour)
            self.sum_w += np.bincount(slot[rows], weights=power[rows], minlength=size)
            self.count += np.bincount(slot[rows], minlength=size)
        return Conditions.unknown(len(batch))

    def _close(self, meters: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        """Finish the current hour of these meters: judge the recent window, then learn."""
        cfg = self.cfg
        hod = (self.hour[meters] % 24).astype(np.int64)
        mean = self.sum_w[meters] / np.maximum(self.count[meters], 1)
        base = self.base[meters, hod]
        warm = (self.days_seen[meters, hod] >= cfg.warmup_days) & (base >= cfg.min_baseline_w)
        self.recent_metered[meters] = np.roll(self.recent_metered[meters], 1, axis=1)
        self.recent_base[meters] = np.roll(self.recent_base[meters], 1, axis=1)
        self.recent_metered[meters, 0] = np.where(warm, mean, np.nan)
        self.recent_base[meters, 0] = np.where(warm, base, np.nan)
        metered = self.recent_metered[meters]
        expected = self.recent_base[meters]
        filled = np.isfinite(metered).sum(axis=1)
        ratio = np.nansum(metered, axis=1) / np.maximum(np.nansum(expected, axis=1), 1e-9)
        hour_ratio = mean / np.maximum(base, 1e-9)
        # The daily shape: a proportional fall keeps the hour-to-hour variation of the
        # baseline; an idle load is flat.
        with np.errstate(invalid="ignore", divide="ignore"):
            shape_base = np.nanstd(expected, axis=1) / np.nanmean(expected, axis=1)
            shape_metered = np.nanstd(metered, axis=1) / np.nanmean(metered, axis=1)
        shape_lost = (shape_base > 0.1) & (shape_metered < 0.3 * shape_base)
        judged = warm & (filled >= min(2, cfg.window_hours))
        low = judged & (ratio < cfg.drop_ratio) & (hour_ratio < cfg.drop_ratio)
        idle = judged & ((ratio < cfg.idle_ratio) | shape_lost)
        fires = low & ~idle
        hour_end = (self.hour[meters] + 1).astype(np.float64) * HOUR_S
        hour_low = warm & (hour_ratio < cfg.drop_ratio)
        start_low = hour_low & ~np.isfinite(self.low_since[meters])
        self.low_since[meters[start_low]] = hour_end[start_low]
        self.low_since[meters[~hour_low]] = np.nan
        verdict = np.where(fires, HOLDS, np.where(judged, CLEAR, UNKNOWN)).astype(np.int8)
        self.verdict[meters] = verdict
        self.pending[meters] = verdict != UNKNOWN
        self.last_ratio[meters] = ratio
        # Learn the hour unless it looked like the theft (a baseline must not adopt it).
        learn = ~hour_low | (self.days_seen[meters, hod] < cfg.warmup_days)
        learn &= self.count[meters] > 0
        lm, lh = meters[learn], hod[learn]
        first = self.days_seen[lm, lh] == 0
        rate = np.maximum(cfg.learn_rate, 1.0 / (self.days_seen[lm, lh] + 1))
        self.base[lm, lh] = np.where(
            first, mean[learn], self.base[lm, lh] + rate * (mean[learn] - self.base[lm, lh])
        )
        self.days_seen[lm, lh] += 1
        self.sum_w[meters] = 0.0
        self.count[meters] = 0.0

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Hand over the verdicts of the hours closed in this batch."""
        slots = np.flatnonzero(self.pending).astype(np.int32)
        if slots.size == 0:
            return None
        self.pending[slots] = False
        holds = self.verdict[slots]
        firing = holds == HOLDS
        ratio = np.nan_to_num(self.last_ratio[slots], nan=1.0)
        base_w = np.nanmean(self.recent_base[slots], axis=1)
        k = slots.size
        cond = Conditions(
            holds=holds,
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.where(firing, np.nan_to_num(base_w) * (1.0 - ratio), 0.0),
            score=np.where(firing, np.clip(1.2 - ratio, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, 1.0 - ratio, 0.0),
            onset=self.low_since[slots],
        )
        return SlotConditions(slot=slots, conditions=cond, dt=np.full(k, HOUR_S))

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the recent hourly consumption against the baseline."""
        return {
            "recent_hourly_w": [
                round(float(v), 1) for v in np.nan_to_num(self.recent_metered[slot])
            ],
            "baseline_hourly_w": [
                round(float(v), 1) for v in np.nan_to_num(self.recent_base[slot])
            ],
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the drop."""
        return (
            f"consumption {facts.peak_magnitude:.0%} below its usual hourly level with the daily "
            f"shape kept, for {format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
