"""Phase shift: a phase's power angle moves far from its own history (P far below V*I)."""

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
    phase_label,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, FloatArray, MeterRegistry, ReadingBatch


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
        self._cos_min_shift = float(np.cos(np.radians(config.min_shift_deg)))

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each phase's angle against its baseline, then learn from clean rows."""
        n = len(batch)
        cfg = self.cfg
        out = Conditions.unknown(n)
        candidates = np.flatnonzero(self._eligible[batch.slot])
        if candidates.size == 0:
            return out
        slot = batch.slot[candidates]
        volts = phase_block(batch, "v1")[:, candidates]
        current = phase_block(batch, "i1")[:, candidates]
        power = phase_block(batch, "p1")[:, candidates]
        reactive = phase_block(batch, "q1")[:, candidates]
        ref = ctx.fleet.ref_v[slot]
        apparent = volts * current
        with np.errstate(invalid="ignore", divide="ignore"):
            pf = power / apparent
            # The angle as a unit vector (cos, sin): from P and Q, or from P / V*I alone
            # (lagging assumed) when Q is not measured.
            norm = np.hypot(power, reactive)
            has_q = np.isfinite(reactive) & (norm > 0)
            pf_clipped = np.clip(np.nan_to_num(pf), -1.0, 1.0)
            cos_a = np.where(has_q, power / norm, pf_clipped)
            sin_a = np.where(has_q, reactive / norm, np.sqrt(1.0 - pf_clipped**2))
        usable = (
            np.isfinite(power)
            & (current >= cfg.min_current_a)
            & (volts >= 0.85 * ref)
            & (power >= 0.0)  # negative power is the reversal detector's
        )
        base_c = self.base_cos[:, slot]
        base_s = self.base_sin[:, slot]
        warm = (self.learned_s[:, slot] >= cfg.warmup_s) & np.isfinite(base_c)
        with np.errstate(invalid="ignore", divide="ignore"):
            base_norm = np.hypot(base_c, base_s)
            bc = base_c / base_norm
            bs = base_s / base_norm
        # cos of the angle between now and usual; without Q only magnitudes compare.
        cos_shift = np.where(has_q, cos_a * bc + sin_a * bs, cos_a * bc + sin_a * np.abs(bs))
        cold_fire = ~warm & (np.nan_to_num(pf, nan=1.0) < cfg.min_pf)
        warm_fire = warm & (np.nan_to_num(cos_shift, nan=1.0) <= self._cos_min_shift)
        phase_fires = usable & (cold_fire | warm_fire)
        firing = phase_fires.any(axis=0)
        # The shift in degrees, only where it fires (the summary's figure).
        shift_cos = np.where(warm, cos_shift, pf)
        shift_cos = np.where(phase_fires, np.nan_to_num(shift_cos, nan=1.0), 2.0)
        worst = shift_cos.argmin(axis=0)
        rows = np.arange(candidates.size)
        worst_deg = np.degrees(np.arccos(np.clip(shift_cos[worst, rows], -1.0, 1.0)))
        expected_pf = np.where(warm, bc, 0.95)
        lost = apparent * expected_pf - power
        lost_w = np.where(phase_fires, np.maximum(np.nan_to_num(lost), 0.0), 0.0).sum(axis=0)
        clean = usable & ~phase_fires & (np.nan_to_num(pf, nan=0.0) >= cfg.min_pf)
        self._learn(ctx.dt[candidates], cos_a, sin_a, clean, slot)
        out.holds[candidates[usable.any(axis=0)]] = CLEAR
        fired = candidates[firing]
        out.holds[fired] = HOLDS
        out.phase[fired] = worst[firing] + 1
        out.loss_w[fired] = lost_w[firing]
        out.score[fired] = np.clip(0.4 + worst_deg[firing] / 60.0, 0.0, 1.0)
        out.magnitude[fired] = worst_deg[firing]
        return out

    def _learn(
        self,
        dt: FloatArray,
        cos_a: FloatArray,
        sin_a: FloatArray,
        clean: np.ndarray[Any, np.dtype[np.bool_]],
        slot: np.ndarray[Any, np.dtype[np.int32]],
    ) -> None:
        """Move each phase's angle baseline towards the batch's clean rows (circular mean)."""
        size = self.base_cos.shape[1]
        step_s = np.where(dt > 0, dt, 60.0)
        for k in range(3):
            seconds = np.where(clean[k], step_s, 0.0)
            covered = np.bincount(slot, weights=seconds, minlength=size).astype(np.float64)
            touched = np.flatnonzero(covered > 0)
            if touched.size == 0:
                continue
            cos_sum = np.bincount(
                slot, weights=np.where(clean[k], cos_a[k], 0.0) * seconds, minlength=size
            )
            sin_sum = np.bincount(
                slot, weights=np.where(clean[k], sin_a[k], 0.0) * seconds, minlength=size
            )
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
