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
    ewma_weight,
    format_duration,
    phase_label,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

_DEFAULT_PF = 0.95


class ImbalanceConfig(DetectorConfig):
    """Options of the imbalance detector."""

    raise_after_s: float = Field(default=300.0, ge=0, description="Persistence before raising.")
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
    baseline_tau_s: float = Field(
        default=86_400.0, gt=0, description="Time constant of the per-phase share baseline, s."
    )
    warmup_s: float = Field(
        default=3 * 3600.0, ge=0, description="Data time of learning before it may fire, s."
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
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and m.phases == 3)
        n = len(registry)
        self.base_share = np.full((3, n), np.nan)
        self.learned_s = np.zeros(n)
        self.suspect = np.zeros(n, dtype=np.bool_)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each row's phase shares against the baseline, then learn from clean rows."""
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
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = share / base
        judgeable = (base >= cfg.min_base_share) & np.isfinite(relative)
        collapsed = judgeable & (relative < cfg.collapse_ratio)
        worst = np.where(judgeable, relative, np.inf).argmin(axis=0)
        rows = np.arange(n)
        firing = usable & warm & collapsed.any(axis=0)
        holds = np.full(n, UNKNOWN, dtype=np.int8)
        holds[usable & warm] = CLEAR
        holds[firing] = HOLDS
        worst_rel = relative[worst, rows] if n else np.zeros(0)
        # The unmetered current is what the phase would carry at its usual share.
        expected_share = base[worst, rows] if n else np.zeros(0)
        metered_share = share[worst, rows] if n else np.zeros(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            true_total = total * (1 - metered_share) / np.maximum(1 - expected_share, 1e-6)
        missing_a = (
            np.maximum(true_total * expected_share - current[worst, rows], 0.0)
            if n
            else (np.zeros(0))
        )
        v_phase = volts[worst, rows] if n else np.zeros(0)
        loss = np.nan_to_num(missing_a * v_phase * _DEFAULT_PF)
        self._learn(batch, ctx, share, usable & ~firing, slot)
        self.suspect[slot[firing]] = True
        score = np.clip(1.0 - np.nan_to_num(worst_rel), 0.0, 1.0)
        return Conditions(
            holds=holds,
            phase=np.where(firing, worst + 1, 0).astype(np.int8),
            loss_w=np.where(firing, loss, 0.0),
            score=np.where(firing, 0.5 + 0.5 * score, 0.0),
            magnitude=np.where(firing, 1.0 - np.nan_to_num(worst_rel), 0.0),
        )

    def _learn(
        self,
        batch: ReadingBatch,
        ctx: BatchContext,
        share: np.ndarray[Any, np.dtype[np.float64]],
        clean: np.ndarray[Any, np.dtype[np.bool_]],
        slot: np.ndarray[Any, np.dtype[np.int32]],
    ) -> None:
        """Move each meter's share baseline towards the batch's clean rows (time-weighted)."""
        size = len(self.learned_s)
        seconds = np.where(clean, np.where(ctx.dt > 0, ctx.dt, 60.0), 0.0)
        covered = np.bincount(slot, weights=seconds, minlength=size).astype(np.float64)
        touched = np.flatnonzero(covered > 0)
        if touched.size == 0:
            return
        weight = ewma_weight(covered[touched], self.cfg.baseline_tau_s)
        # The first hours learn fast (plain average), later the time constant takes over.
        learned = self.learned_s[touched]
        weight = np.maximum(weight, covered[touched] / (learned + covered[touched]))
        for k in range(3):
            sums = np.bincount(
                slot, weights=np.where(clean, share[k] * seconds, 0.0), minlength=size
            )
            mean = sums[touched] / covered[touched]
            old = self.base_share[k, touched]
            self.base_share[k, touched] = np.where(
                np.isfinite(old), old + weight * (mean - old), mean
            )
        self.learned_s[touched] += covered[touched]
        self.suspect[touched] = False

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
