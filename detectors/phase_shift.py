"""Phase shift: a phase's power angle moves far from its own history (P far below V*I)."""

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
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch


class PhaseShiftConfig(DetectorConfig):
    """Options of the phase-shift detector."""

    min_current_a: float = Field(
        default=0.5, gt=0, description="Below this phase current, A, the angle is not judged."
    )
    min_shift_deg: float = Field(
        default=15.0, gt=0, description="Angle change against the phase's history that fires."
    )
    min_pf: float = Field(
        default=0.4,
        gt=0,
        lt=1,
        description="Before the baseline is learned: a power factor below this fires.",
    )
    baseline_tau_s: float = Field(
        default=6 * 3600.0, gt=0, description="Time constant of the angle baseline, s."
    )
    warmup_s: float = Field(
        default=2 * 3600.0, ge=0, description="Data time of learning before the baseline counts."
    )


@register
class PhaseShiftDetector(Detector):
    """Flags the phase-shifting method: a power angle far from the phase's usual one.

    The angle between a phase's voltage and current comes from P and Q (or P / V*I when
    Q is not measured).
    """

    name = "phase_shift"
    kind = AlertKind.PHASE_SHIFT
    config_model = PhaseShiftConfig
    needs = ("v1", "v2", "v3", "i1", "i2", "i3", "p1", "p2", "p3", "q1", "q2", "q3")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, PhaseShiftConfig)
        self.cfg = config
        # Solar and storage move the net angle legitimately; feeder meters are not billed.
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and not m.generation)
        n = len(registry)
        self.base_cos = np.full((3, n), np.nan)
        self.base_sin = np.full((3, n), np.nan)
        self.learned_s = np.zeros((3, n))

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each phase's angle against its baseline, then learn from clean rows."""
        n = len(batch)
        cfg = self.cfg
        slot = batch.slot
        volts = phase_block(batch, "v1")
        current = phase_block(batch, "i1")
        power = phase_block(batch, "p1")
        reactive = phase_block(batch, "q1")
        ref = ctx.fleet.ref_v[slot]
        apparent = volts * current
        with np.errstate(invalid="ignore", divide="ignore"):
            pf = power / apparent
        has_q = np.isfinite(reactive)
        angle = np.where(
            has_q, np.arctan2(reactive, power), np.arccos(np.clip(np.nan_to_num(pf), -1.0, 1.0))
        )
        usable = (
            self._eligible[slot]
            & np.isfinite(power)
            & (current >= cfg.min_current_a)
            & (volts >= 0.85 * ref)
            & (power >= 0.0)  # negative power is the reversal detector's
        )
        base_c = self.base_cos[:, slot]
        base_s = self.base_sin[:, slot]
        warm = self.learned_s[:, slot] >= cfg.warmup_s
        base_angle = np.arctan2(base_s, base_c)
        # Without Q only the magnitude of the angle is known: compare magnitudes.
        base_cmp = np.where(has_q, base_angle, np.abs(base_angle))
        shift = np.abs(np.angle(np.exp(1j * (angle - base_cmp))))
        shift_deg = np.degrees(shift)
        cold_fire = (~warm) & (np.nan_to_num(pf, nan=1.0) < cfg.min_pf)
        warm_fire = warm & np.isfinite(base_angle) & (shift_deg >= cfg.min_shift_deg)
        phase_fires = usable & (cold_fire | warm_fire)
        firing = phase_fires.any(axis=0)
        holds = np.full(n, UNKNOWN, dtype=np.int8)
        holds[usable.any(axis=0)] = CLEAR
        holds[firing] = HOLDS
        worst = np.where(phase_fires, shift_deg, -1.0).argmax(axis=0)
        rows = np.arange(n)
        expected_pf = np.where(warm & np.isfinite(base_angle), np.cos(base_angle), 0.95)
        lost = apparent * expected_pf - power
        lost_w = np.where(phase_fires, np.maximum(np.nan_to_num(lost), 0.0), 0.0).sum(axis=0)
        worst_shift = shift_deg[worst, rows] if n else np.zeros(0)
        worst_shift = np.where(
            warm[worst, rows] if n else np.zeros(0, dtype=np.bool_),
            worst_shift,
            np.degrees(
                np.arccos(np.clip(np.nan_to_num(pf[worst, rows] if n else np.zeros(0)), -1, 1))
            ),
        )
        self._learn(
            ctx, angle, usable & ~phase_fires & (np.nan_to_num(pf, nan=0.0) >= cfg.min_pf), slot
        )
        return Conditions(
            holds=holds,
            phase=np.where(firing, worst + 1, 0).astype(np.int8),
            loss_w=np.where(firing, lost_w, 0.0),
            score=np.where(firing, np.clip(0.4 + np.nan_to_num(worst_shift) / 60.0, 0.0, 1.0), 0.0),
            magnitude=np.where(firing, np.nan_to_num(worst_shift), 0.0),
        )

    def _learn(
        self,
        ctx: BatchContext,
        angle: np.ndarray[Any, np.dtype[np.float64]],
        clean: np.ndarray[Any, np.dtype[np.bool_]],
        slot: np.ndarray[Any, np.dtype[np.int32]],
    ) -> None:
        """Move each phase's angle baseline towards the batch's clean rows (circular mean)."""
        size = self.base_cos.shape[1]
        step_s = np.where(ctx.dt > 0, ctx.dt, 60.0)
        for k in range(3):
            seconds = np.where(clean[k], step_s, 0.0)
            covered = np.bincount(slot, weights=seconds, minlength=size).astype(np.float64)
            touched = np.flatnonzero(covered > 0)
            if touched.size == 0:
                continue
            a = np.where(clean[k], angle[k], 0.0)
            cos_sum = np.bincount(slot, weights=np.cos(a) * seconds, minlength=size)
            sin_sum = np.bincount(slot, weights=np.sin(a) * seconds, minlength=size)
            mean_c = cos_sum[touched] / covered[touched]
            mean_s = sin_sum[touched] / covered[touched]
            learned = self.learned_s[k, touched]
            weight = ewma_weight(covered[touched], self.cfg.baseline_tau_s)
            weight = np.maximum(weight, covered[touched] / (learned + covered[touched]))
            old_c = self.base_cos[k, touched]
            old_s = self.base_sin[k, touched]
            fresh = ~np.isfinite(old_c)
            self.base_cos[k, touched] = np.where(fresh, mean_c, old_c + weight * (mean_c - old_c))
            self.base_sin[k, touched] = np.where(fresh, mean_s, old_s + weight * (mean_s - old_s))
            self.learned_s[k, touched] += covered[touched]

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the usual power angle of each phase."""
        angles = np.degrees(np.arctan2(self.base_sin[:, slot], self.base_cos[:, slot]))
        return {"usual_angle_deg": [round(float(a), 1) for a in angles]}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the shifted phase."""
        return (
            f"{phase_label(facts.phase)} power angle off its usual value by up to "
            f"{facts.peak_magnitude:.0f} deg (P far below V*I), for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
