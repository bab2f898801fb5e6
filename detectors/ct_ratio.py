"""CT ratio: a current transformer whose typical load lies outside 30-100 % of its rating."""

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
    SlotConditions,
    format_duration,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

_BIN = 0.02
_BINS = 101  # 0-2x rating in 2 % steps, the last bin holds everything above


class CtRatioConfig(DetectorConfig):
    """Options of the CT-ratio detector."""

    raise_after_s: float = Field(default=0.0, ge=0, description="The days judged are persistence.")
    clear_after_s: float = Field(
        default=7 * 86_400.0, ge=0, description="Raised once: it stays open for days."
    )
    update_every_s: float = Field(default=3600.0, gt=0, description="Between update events, s.")
    severity: Severity = Field(default=Severity.WARNING, description="Severity of its alerts.")
    low_ratio: float = Field(default=0.30, gt=0, description="Typical load below this fires.")
    high_ratio: float = Field(
        default=1.0, gt=0, description="Typical load above this fires (towards saturation)."
    )
    percentile: float = Field(
        default=95.0, gt=0, le=100, description="The 'typical load' percentile of current."
    )
    min_observed_s: float = Field(
        default=86_400.0, gt=0, description="Data time observed before judging, s."
    )
    judge_every_s: float = Field(default=3600.0, gt=0, description="Judge this often, s.")
    accuracy_loss: float = Field(
        default=0.02, ge=0, lt=1, description="Share of metered energy lost to CT error."
    )


@register
class CtRatioDetector(Detector):
    """Flags CT-connected meters whose typical load does not fit the CT rating.

    Keeps a histogram of each CT meter's load (mean phase current / CT rating) and
    judges its percentile once enough days are seen.
    """

    name = "ct_ratio"
    kind = AlertKind.CT_RATIO
    config_model = CtRatioConfig
    needs = ("i1", "i2", "i3")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, CtRatioConfig)
        self.cfg = config
        n = len(registry)
        # Billing meters only: a feeder check meter's CT error costs no bill.
        self.rating = registry.float_array(
            lambda m: m.ct_primary_a if m.role == "customer" else None
        )
        self.hist = np.zeros((n, _BINS))
        self.observed_s = np.zeros(n)
        self.sum_w = np.zeros(n)
        self.next_judgement = -np.inf
        self.typical = np.full(n, np.nan)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Add the batch's CT meters' load to their histograms."""
        slot = batch.slot
        rating = self.rating[slot]
        # The service's load current: the mean of its phase currents (a lopsided customer's
        # one heavy phase is its wiring, not the CT's fit).
        currents = phase_block(batch, "i1")
        measured = np.isfinite(currents).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            load = np.where(measured > 0, np.nansum(currents, axis=0) / measured, np.nan)
        ok = np.isfinite(rating) & np.isfinite(load)
        if ok.any():
            ratio = load[ok] / rating[ok]
            bins = np.minimum((ratio / _BIN).astype(np.int64), _BINS - 1)
            seconds = np.where(ctx.dt[ok] > 0, ctx.dt[ok], 0.0)
            flat = slot[ok].astype(np.int64) * _BINS + bins
            # Only the CT meters' rows: a scattered add, not a pass over every histogram.
            np.add.at(self.hist.reshape(-1), flat, seconds)
            size = len(self.observed_s)
            self.observed_s += np.bincount(slot[ok], weights=seconds, minlength=size)
            power = np.nansum(phase_block(batch, "p1"), axis=0)[ok]
            self.sum_w += np.bincount(
                slot[ok], weights=np.nan_to_num(power) * seconds, minlength=size
            )
        return Conditions.unknown(len(batch))

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Judge the meters seen long enough, every judge_every_s of data time."""
        cfg = self.cfg
        if ctx.now < self.next_judgement:
            return None
        self.next_judgement = ctx.now + cfg.judge_every_s
        slots = np.flatnonzero(self.observed_s >= cfg.min_observed_s).astype(np.int32)
        if slots.size == 0:
            return None
        hist = self.hist[slots]
        cumulative = np.cumsum(hist, axis=1) / np.maximum(hist.sum(axis=1, keepdims=True), 1e-9)
        index = np.argmax(cumulative >= cfg.percentile / 100.0, axis=1)
        typical = (index + 0.5) * _BIN
        self.typical[slots] = typical
        firing = (typical < cfg.low_ratio) | (typical > cfg.high_ratio)
        mean_w = self.sum_w[slots] / np.maximum(self.observed_s[slots], 1.0)
        k = slots.size
        off = np.where(typical < cfg.low_ratio, cfg.low_ratio - typical, typical - cfg.high_ratio)
        cond = Conditions(
            holds=np.where(firing, HOLDS, CLEAR).astype(np.int8),
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.where(firing, np.abs(mean_w) * cfg.accuracy_loss, 0.0),
            score=np.where(firing, np.clip(0.6 + off, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, typical, 0.0),
        )
        return SlotConditions(slot=slots, conditions=cond, dt=np.full(k, cfg.judge_every_s))

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the typical load against the CT rating."""
        return {
            "ct_primary_a": float(self.rating[slot]),
            "typical_load_share": round(float(np.nan_to_num(self.typical[slot])), 3),
            "observed_h": round(float(self.observed_s[slot]) / 3600.0, 1),
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the misfit."""
        side = "below the 30 % floor" if facts.peak_magnitude < 0.3 else "above the rating"
        return (
            f"typical load {facts.peak_magnitude:.0%} of the CT rating ({side}: metering "
            f"accuracy lost), judged over {format_duration(facts.duration_s + 86_400.0)}"
        )
