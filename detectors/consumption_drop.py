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
from meterguard.model import AlertKind, FloatArray, IntArray, MeterRegistry, ReadingBatch, Severity

HOUR_S = 3600.0
#: Rows of the hourly sums: power, rows, rows with a voltage drop, x, y, x*x, x*y.
_POWER, _ROWS, _PAIRED, _X, _Y, _XX, _XY = range(7)
_SUMS = 7
#: Weight an older hour keeps in the cable fit each time a new clean hour is added.
_FIT_DECAY = 0.98
#: Data time, from a single-phase meter's first usable reading, over which it is learned
#: which transformer phase feeds it (in time, not rows: meters read at their own interval).
_PHASE_LEARN_S = 86_400.0
#: Readings needed before the learned phase is used (a sample-size floor).
_PHASE_MIN_ROWS = 60


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
    max_current_ratio: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="Metered current below this share of the current the service voltage "
        "drop implies counts as unmetered load (needs a feeder meter on the transformer).",
    )
    min_implied_drop_v: float = Field(
        default=0.05,
        gt=0,
        description="Hours whose implied service-cable voltage drop is below this, V, give no "
        "voltage evidence (too little current to tell).",
    )
    learn_rate: float = Field(
        default=0.3, gt=0, le=1, description="Weight of a new day in the hour-of-day baseline."
    )
    warmup_days: int = Field(
        default=1, ge=1, description="Days each hour of the day must be seen before judging."
    )


def _variation(rows: FloatArray) -> FloatArray:
    """Return each row's coefficient of variation over its known values (NaN: too few)."""
    known = np.isfinite(rows)
    count = known.sum(axis=1)
    filled = np.where(known, rows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / count
        spread = np.sqrt(np.where(known, (filled - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)
        variation: FloatArray = np.where(count >= 2, spread / mean, np.nan)
    return variation


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
        self._three = registry.flag_array(lambda m: m.phases == 3)
        feeders = {m.transformer for m in registry if m.role == "feeder" and m.transformer}
        self._has_feeder = registry.flag_array(lambda m: m.transformer in feeders)
        self.base = np.zeros((n, 24))
        self.days_seen = np.zeros((n, 24), dtype=np.int32)
        self.hour = np.full(n, -1, dtype=np.int64)
        # This hour's sums: power, and the (current, voltage drop) pairs.
        self.hour_sums = np.zeros((_SUMS, n))
        # Learned service-cable relation, voltage drop = a + b * current, from clean hours.
        self.fit_sums = np.zeros((_SUMS, n))
        # Single-phase meters: which phase of the transformer feeds them (smallest spread).
        self.phase_d = np.zeros((3, n))
        self.phase_d2 = np.zeros((3, n))
        self.phase_n = np.zeros(n)
        self.phase_first = np.full(n, np.nan)
        self.recent_metered = np.full((n, w), np.nan)
        self.recent_base = np.full((n, w), np.nan)
        self.recent_current = np.full((n, w), np.nan)
        self.recent_implied = np.full((n, w), np.nan)
        self.low_since = np.full(n, np.nan)
        self.verdict = np.full(n, UNKNOWN, dtype=np.int8)
        self.pending = np.zeros(n, dtype=np.bool_)
        self.last_ratio = np.full(n, np.nan)

    def _voltage_drop(
        self, batch: ReadingBatch, ctx: BatchContext
    ) -> tuple[FloatArray, FloatArray]:
        """Return per row the metered current and the service-cable voltage drop (NaN: none).

        The drop is the check meter's voltage minus the customer's: it grows with the TRUE
        current through the service cable, whatever the meter registers.
        """
        slot = batch.slot
        current = phase_block(batch, "i1")
        volts = phase_block(batch, "v1")
        feeder = ctx.feeder_voltage()
        drops = feeder - volts
        three = self._three[slot]
        both = np.isfinite(drops) & np.isfinite(current)
        drop3 = np.where(both.all(axis=0), np.where(both, drops, 0.0).sum(axis=0), np.nan)
        current3 = np.nansum(current, axis=0)
        # Single-phase: the drop against each feeder phase; learn which phase is theirs.
        single = ~three & np.isfinite(volts[0])
        one_drop = feeder - volts[0][None, :]
        # A day of data settles it; after that the phase stays as learned.
        learning = ~(batch.ts - self.phase_first[slot] >= _PHASE_LEARN_S)
        rows = single & np.isfinite(one_drop).all(axis=0) & learning
        picked = np.flatnonzero(rows)
        if picked.size:
            at = slot[picked]
            np.fmin.at(self.phase_first, at, batch.ts[picked])
            for k in range(3):
                d = one_drop[k, picked]
                np.add.at(self.phase_d[k], at, d)
                np.add.at(self.phase_d2[k], at, d * d)
            np.add.at(self.phase_n, at, 1.0)
        count = np.maximum(self.phase_n[slot], 1.0)
        spread = self.phase_d2[:, slot] / count - (self.phase_d[:, slot] / count) ** 2
        own = spread.argmin(axis=0)
        known = self.phase_n[slot] >= _PHASE_MIN_ROWS
        drop1 = np.where(known, one_drop[own, np.arange(len(slot))], np.nan)
        drop = np.where(three, drop3, drop1)
        metered = np.where(three, current3, current[0])
        return metered, drop

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
        current, drop = self._voltage_drop(batch, ctx)
        paired = ok & np.isfinite(current) & np.isfinite(drop)
        x = np.where(paired, current, 0.0)
        y = np.where(paired, drop, 0.0)
        terms = (
            np.where(ok, power, 0.0),
            ok.astype(np.float64),
            paired.astype(np.float64),
            x,
            y,
            x * x,
            x * y,
        )
        hours = np.floor(batch.ts / HOUR_S).astype(np.int64)
        size = len(self.hour)
        for hour in np.unique(hours[ok]).tolist():
            rows = ok & (hours == hour)
            meters = np.unique(slot[rows])
            closing = meters[(self.hour[meters] >= 0) & (self.hour[meters] < hour)]
            if closing.size:
                self._close(closing)
            fresh = meters[self.hour[meters] < hour]
            self.hour[fresh] = hour
            # Every sum in one bincount: term t of meter m lands in bin t * size + m.
            picked = np.flatnonzero(rows)
            keys = (np.arange(_SUMS)[:, None] * size + slot[picked][None, :]).ravel()
            weights = np.stack([term[picked] for term in terms]).ravel()
            sums = np.bincount(keys, weights=weights, minlength=_SUMS * size)
            self.hour_sums += sums.reshape(_SUMS, size)
        return Conditions.unknown(len(batch))

    def _implied_current(self, meters: IntArray) -> tuple[FloatArray, FloatArray]:
        """Return this hour's mean metered current and the current the voltage drop implies."""
        cfg = self.cfg
        h = self.hour_sums[:, meters]
        f = self.fit_sums[:, meters]
        with np.errstate(invalid="ignore", divide="ignore"):
            x_mean = h[_X] / h[_PAIRED]
            y_mean = h[_Y] / h[_PAIRED]
            n = f[_PAIRED]
            fx = f[_X] / n
            fy = f[_Y] / n
            var_x = f[_XX] / n - fx * fx
            slope = (f[_XY] / n - fx * fy) / var_x
            intercept = fy - slope * fx
            implied = (y_mean - intercept) / slope
        usable = (n >= 30) & (var_x > 1e-3 * np.maximum(fx * fx, 1e-6)) & (slope > 0)
        usable &= h[_PAIRED] >= 3
        usable &= (y_mean - intercept) >= cfg.min_implied_drop_v
        return x_mean, np.where(usable, implied, np.nan)

    def _close(self, meters: IntArray) -> None:
        """Finish the current hour of these meters: judge the recent window, then learn."""
        cfg = self.cfg
        hod = (self.hour[meters] % 24).astype(np.int64)
        mean = self.hour_sums[_POWER, meters] / np.maximum(self.hour_sums[_ROWS, meters], 1)
        base = self.base[meters, hod]
        warm = (self.days_seen[meters, hod] >= cfg.warmup_days) & (base >= cfg.min_baseline_w)
        current, implied = self._implied_current(meters)
        for ring, value in (
            (self.recent_metered, np.where(warm, mean, np.nan)),
            (self.recent_base, np.where(warm, base, np.nan)),
            (self.recent_current, current),
            (self.recent_implied, implied),
        ):
            ring[meters] = np.roll(ring[meters], 1, axis=1)
            ring[meters, 0] = value
        metered = self.recent_metered[meters]
        expected = self.recent_base[meters]
        filled = np.isfinite(metered).sum(axis=1)
        ratio = np.nansum(metered, axis=1) / np.maximum(np.nansum(expected, axis=1), 1e-9)
        hour_ratio = mean / np.maximum(base, 1e-9)
        # The daily shape: a proportional fall keeps the hour-to-hour variation of the
        # baseline; an idle load is flat.
        with np.errstate(invalid="ignore", divide="ignore"):
            shape_base = _variation(expected)
            shape_metered = _variation(metered)
        shape_lost = (shape_base > 0.1) & (shape_metered < 0.3 * shape_base)
        # The voltage evidence: every hour of the window must show less metered current
        # than the service cable's voltage drop says flows.
        with np.errstate(invalid="ignore", divide="ignore"):
            hour_current_ratio = self.recent_current[meters] / self.recent_implied[meters]
        need = min(2, cfg.window_hours)
        told = np.isfinite(hour_current_ratio)
        with np.errstate(invalid="ignore"):
            worst_hour = np.nanmax(np.where(told, hour_current_ratio, -np.inf), axis=1)
        unmetered = (told.sum(axis=1) >= need) & (worst_hour < cfg.max_current_ratio)
        # With a check meter on the transformer the voltage must confirm the fall; without
        # one, consumption against its own history is all there is.
        has_feeder = self._has_feeder[meters]
        judged = warm & (filled >= need)
        low = judged & (ratio < cfg.drop_ratio) & (hour_ratio < cfg.drop_ratio)
        low &= np.where(has_feeder, unmetered, True)
        idle = judged & ((ratio < cfg.idle_ratio) | shape_lost)
        fires = low & ~idle
        hour_end = (self.hour[meters] + 1).astype(np.float64) * HOUR_S
        this_current = current / implied
        hour_low = warm & (hour_ratio < cfg.drop_ratio)
        hour_low &= np.where(np.isfinite(this_current), this_current < cfg.max_current_ratio, True)
        start_low = hour_low & ~np.isfinite(self.low_since[meters])
        self.low_since[meters[start_low]] = hour_end[start_low]
        self.low_since[meters[~hour_low]] = np.nan
        verdict = np.where(fires, HOLDS, np.where(judged, CLEAR, UNKNOWN)).astype(np.int8)
        self.verdict[meters] = verdict
        self.pending[meters] = verdict != UNKNOWN
        self.last_ratio[meters] = ratio
        # Learn the hour unless it looked like the theft (a baseline must not adopt it).
        clean = ~hour_low | (self.days_seen[meters, hod] < cfg.warmup_days)
        learn = clean & (self.hour_sums[_ROWS, meters] > 0)
        lm, lh = meters[learn], hod[learn]
        first = self.days_seen[lm, lh] == 0
        rate = np.maximum(cfg.learn_rate, 1.0 / (self.days_seen[lm, lh] + 1))
        self.base[lm, lh] = np.where(
            first, mean[learn], self.base[lm, lh] + rate * (mean[learn] - self.base[lm, lh])
        )
        self.days_seen[lm, lh] += 1
        fit = meters[clean]
        self.fit_sums[:, fit] = self.fit_sums[:, fit] * _FIT_DECAY + self.hour_sums[:, fit]
        self.hour_sums[:, meters] = 0.0

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Hand over the verdicts of the hours closed in this batch."""
        slots = np.flatnonzero(self.pending).astype(np.int32)
        if slots.size == 0:
            return None
        self.pending[slots] = False
        holds = self.verdict[slots]
        firing = holds == HOLDS
        ratio = np.nan_to_num(self.last_ratio[slots], nan=1.0)
        known = np.isfinite(self.recent_base[slots])
        base_w = np.where(known, self.recent_base[slots], 0.0).sum(axis=1) / np.maximum(
            known.sum(axis=1), 1
        )
        k = slots.size
        cond = Conditions(
            holds=holds,
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.where(firing, np.nan_to_num(base_w) * (1.0 - ratio), 0.0),
            score=np.where(firing, np.clip(1.2 - ratio, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, 1.0 - ratio, 0.0),
            # The reading that showed it: the end of the second low hour in a row (a first
            # low hour alone may be the meter's own noise just before a theft began).
            onset=self.low_since[slots] + HOUR_S,
        )
        return SlotConditions(slot=slots, conditions=cond, dt=np.full(k, HOUR_S))

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the recent hourly consumption against the baseline."""
        since = self.low_since[slot]
        return {
            "low_since_ts": None if not np.isfinite(since) else float(since) - HOUR_S,
            "recent_current_a": [
                round(float(v), 2) for v in np.nan_to_num(self.recent_current[slot])
            ],
            "current_implied_by_voltage_drop_a": [
                round(float(v), 2) for v in np.nan_to_num(self.recent_implied[slot])
            ],
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
