"""Energy balance: a transformer's check meter measures more than its customers plus losses."""

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


class EnergyBalanceConfig(DetectorConfig):
    """Options of the energy-balance detector."""

    raise_after_s: float = Field(default=0.0, ge=0, description="Windows judged are persistence.")
    clear_after_s: float = Field(default=7200.0, ge=0, description="Absence before clearing.")
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    window_s: float = Field(default=3600.0, gt=0, description="Energy is compared per window, s.")
    loss_allowance: float = Field(
        default=0.06,
        ge=0,
        lt=1,
        description="Technical losses allowed, as a share of the feeder's energy.",
    )
    gap_margin: float = Field(
        default=0.025,
        ge=0,
        description="Once the usual gap of an hour of the day is learned (from windows that "
        "showed nothing), a gap this share of the feeder's power above it fires too.",
    )
    gap_learn_rate: float = Field(
        default=0.3, gt=0, le=1, description="Weight of a clean window in the usual gap."
    )
    min_excess_w: float = Field(
        default=300.0, ge=0, description="And the unexplained power must pass this, W."
    )
    step_w: float = Field(
        default=1000.0,
        gt=0,
        description="A rise of the unexplained power by this much, W, within two windows "
        "while an alert is open is a new incident (and a new alert).",
    )
    step_share: float = Field(
        default=0.1, gt=0, description="... and by at least this share of the level before."
    )
    min_coverage: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Share of a window each meter must have reported for the window to count.",
    )


@register
class EnergyBalanceDetector(Detector):
    """Flags a transformer whose check meter sees more than its customers plus losses.

    Per transformer and window: feeder mean power against the sum of its customers' mean
    power plus a loss allowance, or plus the gap usual at that hour of the day (losses,
    customer CTs that read low at light load) and a margin, whichever is lower. Raised on
    the feeder meter.
    """

    name = "energy_balance"
    kind = AlertKind.ENERGY_BALANCE
    config_model = EnergyBalanceConfig
    needs = ("p1", "p2", "p3")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, EnergyBalanceConfig)
        self.cfg = config
        n = len(registry)
        self.window = -1
        self.sum_w = np.zeros(n)
        self.seconds = np.zeros(n)
        self.count = np.zeros(n)
        self.verdicts: SlotConditions | None = None
        self.figures: dict[int, dict[str, float]] = {}
        self._ready = False
        self.previous = np.full((2, n), np.nan)
        self.windows_since_start = np.zeros(n, dtype=np.int64)
        self.firing = np.zeros(n, dtype=np.bool_)
        self.usual_gap = np.full((n, 24), np.nan)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Accumulate every meter's power into the current window; close windows passed."""
        slot = batch.slot
        power = np.nansum(phase_block(batch, "p1"), axis=0)
        measured = np.isfinite(phase_block(batch, "p1")).any(axis=0)
        windows = np.floor(batch.ts / self.cfg.window_s).astype(np.int64)
        size = len(self.sum_w)
        step_s = np.where(ctx.dt > 0, ctx.dt, 0.0)
        for window in np.unique(windows).tolist():
            if window > self.window:
                if self.window >= 0:
                    self._close(ctx)
                self.window = window
            rows = measured & (windows == window)
            self.sum_w += np.bincount(slot[rows], weights=power[rows], minlength=size)
            self.count += np.bincount(slot[rows], minlength=size)
            self.seconds += np.bincount(slot[rows], weights=step_s[rows], minlength=size)
        return Conditions.unknown(len(batch))

    def _close(self, ctx: BatchContext) -> None:
        fleet = ctx.fleet
        cfg = self.cfg
        if fleet.n_transformers == 0:
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.count > 0, self.sum_w / self.count, np.nan)
        covered = self.seconds >= cfg.min_coverage * cfg.window_s * 0.9
        covered |= self.count >= 2  # a first window or a slow meter: enough to average
        trafo = fleet.transformer
        has = trafo >= 0
        t = np.maximum(trafo, 0)
        nt = fleet.n_transformers
        cust = has & fleet.customer
        feed = has & fleet.feeder
        customers_w = np.bincount(t[cust], weights=np.nan_to_num(mean[cust]), minlength=nt)
        missing = np.bincount(t[cust], weights=(~(covered & np.isfinite(mean)))[cust], minlength=nt)
        feeder_w = np.bincount(t[feed], weights=np.nan_to_num(mean[feed]), minlength=nt)
        feeder_bad = np.bincount(
            t[feed], weights=(~(covered & np.isfinite(mean)))[feed], minlength=nt
        )
        feeders = np.flatnonzero(feed).astype(np.int32)
        if self._ready and feeders.size:
            ft = trafo[feeders]
            judged = (missing[ft] == 0) & (feeder_bad[ft] == 0)
            feeder_now = np.abs(feeder_w[ft])
            gap = feeder_w[ft] - customers_w[ft]
            # The usual gap at this hour of the day (losses, and customer CTs that read low
            # at light load), learned from windows that showed nothing; before it is known,
            # and never above it, the allowance.
            hour = int(self.window % 24) if cfg.window_s == 3600.0 else 0
            usual = self.usual_gap[feeders, hour]
            known = np.isfinite(usual)
            limit = np.where(
                known, np.minimum(usual + cfg.gap_margin, cfg.loss_allowance), cfg.loss_allowance
            )
            excess = gap - limit * feeder_now
            firing = judged & (excess > cfg.min_excess_w)
            clean = judged & ~firing & (feeder_now > 0)
            share_now = gap / np.maximum(feeder_now, 1.0)
            self.usual_gap[feeders, hour] = np.where(
                clean,
                np.where(known, usual + cfg.gap_learn_rate * (share_now - usual), share_now),
                usual,
            )
            holds = np.where(firing, HOLDS, np.where(judged, CLEAR, UNKNOWN)).astype(np.int8)
            share = excess / np.maximum(np.abs(feeder_w[ft]), 1.0)
            # A new source of unmetered power on a transformer that already had one is a
            # new incident: a step above the lower of the two windows before (a step that
            # starts inside a window shows in full only in the next one).
            before = np.fmin(self.previous[0, feeders], self.previous[1, feeders])
            step = excess - before
            settled = self.windows_since_start[feeders] >= 2
            restart = (
                firing
                & self.firing[feeders]
                & settled
                & (step >= np.maximum(cfg.step_w, cfg.step_share * np.maximum(before, 0.0)))
            )
            starting = firing & (~self.firing[feeders] | restart)
            self.windows_since_start[feeders] = np.where(
                starting, 0, self.windows_since_start[feeders] + 1
            )
            self.previous[1, feeders] = self.previous[0, feeders]
            self.previous[0, feeders] = np.where(judged, excess, np.nan)
            self.firing[feeders] = firing
            k = feeders.size
            cond = Conditions(
                holds=holds,
                phase=np.zeros(k, dtype=np.int8),
                loss_w=np.where(firing, excess, 0.0),
                score=np.where(firing, np.clip(0.5 + share, 0.0, 0.95), 0.0),
                magnitude=np.where(firing, share, 0.0),
                restart=restart,
            )
            self.verdicts = SlotConditions(
                slot=feeders, conditions=cond, dt=np.full(k, cfg.window_s)
            )
            for f, tr in zip(feeders.tolist(), ft.tolist(), strict=True):
                self.figures[f] = {
                    "feeder_w": round(float(feeder_w[tr]), 1),
                    "customers_w": round(float(customers_w[tr]), 1),
                    "allowance_w": round(float(cfg.loss_allowance * abs(feeder_w[tr])), 1),
                }
        # The first window is usually partial; judging it would compare unequal spans.
        self._ready = True
        self.sum_w[:] = 0.0
        self.count[:] = 0.0
        self.seconds[:] = 0.0

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Hand over the verdicts of the window closed in this batch."""
        verdicts, self.verdicts = self.verdicts, None
        return verdicts

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the window's feeder power, customers' power and allowance."""
        return {"window_s": self.cfg.window_s, **self.figures.get(slot, {})}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the unexplained share."""
        return (
            f"check meter sees up to {facts.peak_magnitude:.0%} more than its customers plus "
            f"losses, for {format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
