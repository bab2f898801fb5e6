"""Imbalance: one phase's share of the current collapses against the meter's own history."""

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
    format_duration,
    phase_label,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

_DEFAULT_PF = 0.95


class ImbalanceConfig(DetectorConfig):
    """Options of the imbalance detector."""

    raise_after_s: float = Field(
        default=600.0,
        ge=0,
        description="Persistence before raising (longer than an appliance cycle).",
    )
    clear_after_s: float = Field(default=1800.0, ge=0, description="Absence before clearing.")
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    min_total_a: float = Field(
        default=1.0, gt=0, description="Below this total current, A, shares are not judged."
    )
    min_base_share: float = Field(
        default=0.08, ge=0, lt=1, description="A phase normally carrying less is not judged."
    )
    collapse_ratio: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="A phase whose share falls below this fraction of its usual share fires.",
    )
    median_step: float = Field(
        default=0.001,
        gt=0,
        description="Step of the per-phase median share tracker per minute of data.",
    )
    warmup_s: float = Field(
        default=6 * 3600.0, ge=0, description="Data time of learning before it may fire, s."
    )


@register
class ImbalanceDetector(Detector):
    """Flags one phase under-registering on a three-phase meter without neutral measurement.

    A phase's current collapsing against that phase's own history while its voltage and
    the other phases carry on.
    """

    name = "imbalance"
    kind = AlertKind.IMBALANCE
    config_model = ImbalanceConfig
    needs = ("i1", "i2", "i3", "v1", "v2", "v3", "in")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, ImbalanceConfig)
        self.cfg = config
        # Solar or storage behind the meter moves each phase's net current at will.
        self._eligible = registry.flag_array(
            lambda m: m.role == "customer" and m.phases == 3 and not m.generation
        )
        n = len(registry)
        self.base_share = np.full((3, n), np.nan)
        self.learned_s = np.zeros(n)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each phase against what the other phases predict for it, then learn."""
        n = len(batch)
        cfg = self.cfg
        slot = batch.slot
        current = phase_block(batch, "i1")
        volts = phase_block(batch, "v1")
        total = current.sum(axis=0)
        ref = ctx.fleet.ref_v[slot]
        # A measured neutral lets the bypass detector judge the row from physics instead.
        eligible = self._eligible[slot] & ~np.isfinite(batch.col("in"))
        voltage_ok = (volts >= 0.85 * ref).all(axis=0)
        usable = eligible & np.isfinite(total) & (total >= cfg.min_total_a) & voltage_ok
        with np.errstate(invalid="ignore", divide="ignore"):
            share = current / total
        base = self.base_share[:, slot]
        warm = self.learned_s[slot] >= cfg.warmup_s
        carried = base >= cfg.min_base_share
        # Each other phase predicts this phase's current from the usual shares. An appliance
        # switching on another phase inflates one prediction only, so a phase counts as
        # collapsed when it is low against EVERY other phase that normally carries load.
        best = np.full((3, n), -np.inf)
        lowest_prediction = np.full((3, n), np.inf)
        for k in range(3):
            for j in range(3):
                if j == k:
                    continue
                with np.errstate(invalid="ignore", divide="ignore"):
                    predicted = current[j] * base[k] / base[j]
                    ratio = current[k] / predicted
                ok = carried[j] & np.isfinite(ratio)
                best[k] = np.where(ok, np.fmax(best[k], ratio), best[k])
                lowest_prediction[k] = np.where(
                    ok, np.fmin(lowest_prediction[k], predicted), lowest_prediction[k]
                )
        # Two other phases must carry load: with one, an appliance on it fakes a collapse.
        others = carried.sum(axis=0)[None, :] - carried
        judgeable = carried & np.isfinite(best) & (others >= 2)
        collapsed = judgeable & (best < cfg.collapse_ratio)
        worst = np.where(judgeable, best, np.inf).argmin(axis=0)
        rows = np.arange(n)
        firing = usable & warm & collapsed.any(axis=0)
        holds = np.full(n, UNKNOWN, dtype=np.int8)
        holds[usable & warm & judgeable.any(axis=0)] = CLEAR
        holds[firing] = HOLDS
        worst_ratio = np.nan_to_num(best[worst, rows], posinf=1.0, neginf=1.0)
        metered = np.nan_to_num(current[worst, rows])
        expected = np.nan_to_num(lowest_prediction[worst, rows], posinf=0.0)
        missing_a = expected - metered
        v_phase = np.nan_to_num(volts[worst, rows])
        loss = np.nan_to_num(np.maximum(missing_a, 0.0) * v_phase * _DEFAULT_PF)
        # Learn from every row while warming up (a baseline that refused to learn from what
        # it flags could never correct a bad start), afterwards only from clean rows.
        self._learn(ctx, share, usable & (~firing | ~warm), slot)
        deficit = np.clip(1.0 - worst_ratio, 0.0, 1.0)
        return Conditions(
            holds=holds,
            phase=np.where(firing, worst + 1, 0).astype(np.int8),
            loss_w=np.where(firing, loss, 0.0),
            score=np.where(firing, 0.5 + 0.5 * deficit, 0.0),
            magnitude=np.where(firing, deficit, 0.0),
        )

    def _learn(
        self,
        ctx: BatchContext,
        share: np.ndarray[Any, np.dtype[np.float64]],
        clean: np.ndarray[Any, np.dtype[np.bool_]],
        slot: np.ndarray[Any, np.dtype[np.int32]],
    ) -> None:
        """Track each phase's median share: a step up or down per minute of clean data.

        A median, unlike a mean, is not pulled by the minutes an appliance runs on a phase.
        """
        size = len(self.learned_s)
        minutes = np.where(clean, np.where(ctx.dt > 0, ctx.dt, 60.0) / 60.0, 0.0)
        covered = np.bincount(slot, weights=minutes, minlength=size).astype(np.float64)
        touched = np.flatnonzero(covered > 0)
        if touched.size == 0:
            return
        for k in range(3):
            base_rows = self.base_share[k, slot]
            fresh = ~np.isfinite(base_rows)
            value = np.where(clean, share[k], 0.0)
            # A meter seen for the first time starts from its first batch's mean share.
            sums = np.bincount(slot, weights=value * minutes, minlength=size)
            first = touched[~np.isfinite(self.base_share[k, touched])]
            self.base_share[k, first] = sums[first] / covered[first]
            direction = np.where(clean & ~fresh, np.sign(share[k] - base_rows), 0.0)
            pull = np.bincount(slot, weights=direction * minutes, minlength=size)
            # Never step past the batch's own mean: many rows of one meter in one batch
            # would otherwise overshoot.
            old = self.base_share[k, touched]
            mean = sums[touched] / covered[touched]
            moved = old + self.cfg.median_step * pull[touched]
            self.base_share[k, touched] = np.where(
                moved > old,
                np.minimum(moved, np.maximum(old, mean)),
                np.maximum(moved, np.minimum(old, mean)),
            )
        self.learned_s[touched] += covered[touched] * 60.0

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the usual phase shares the collapse was judged against."""
        return {"usual_phase_shares": [round(float(s), 3) for s in self.base_share[:, slot]]}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the collapsed phase."""
        return (
            f"{phase_label(facts.phase)} current share down {facts.peak_magnitude:.0%} against "
            f"its own history with normal voltage, for {format_duration(facts.duration_s)} "
            f"({facts.kwh_lost:.1f} kWh est.)"
        )
