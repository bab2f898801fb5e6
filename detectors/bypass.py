"""Bypass: current that passes a metering element unseen, shown by the neutral current."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
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

#: Supply voltage phasor angles of L1, L2, L3 (radians).
_ANGLES = np.array([0.0, -2.0 * np.pi / 3.0, 2.0 * np.pi / 3.0])
_DEFAULT_PF = 0.95
_UNITS = np.exp(1j * _ANGLES)
#: Export on a phase beyond this, W, at a customer without generation: a reversal.
_REVERSED_W = 30.0
_USUAL_TAU_S = 3600.0


class BypassConfig(DetectorConfig):
    """Options of the bypass detector."""

    min_current_a: float = Field(
        default=0.3, gt=0, description="Below this current, A, a mismatch cannot be told."
    )
    min_mismatch_ratio: float = Field(
        default=0.08,
        gt=0,
        lt=1,
        description="Neutral/phase mismatch, as a share of the load current, that counts.",
    )
    min_mismatch_a: float = Field(
        default=0.1, gt=0, description="And at least this many amperes (measurement noise)."
    )


@register
class BypassDetector(Detector):
    """Compares the measured neutral current with the phase current(s) the meter registers.

    Single-phase: the neutral carries the phase current. Three-phase four-wire: the neutral
    carries the phasor sum of the phase currents, angles from each phase's P and Q. A meter
    that does not measure its neutral (blank `in`) cannot be judged here: the imbalance
    detector judges it against its own history.
    """

    name = "bypass"
    kind = AlertKind.BYPASS
    config_model = BypassConfig
    needs = ("i1", "i2", "i3", "in", "p1", "p2", "p3", "q1", "q2", "q3", "v1", "v2", "v3")

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, BypassConfig)
        self.cfg = config
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and m.service != "3p3w")
        self._three = registry.flag_array(lambda m: m.phases == 3)
        self._generation = registry.flag_array(lambda m: m.generation)
        self.usual_a = np.zeros((3, len(registry)))

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Mark rows whose neutral current disagrees with the metered phase currents."""
        n = len(batch)
        cfg = self.cfg
        out = Conditions.unknown(n)
        neutral_all = batch.col("in")
        slot_all = batch.slot
        candidates = np.flatnonzero(self._eligible[slot_all] & np.isfinite(neutral_all))
        if candidates.size == 0:
            return out
        # Only rows that can be judged are computed on: no work per unjudgeable row.
        current = phase_block(batch, "i1")[:, candidates]
        volts = phase_block(batch, "v1")[:, candidates]
        power = phase_block(batch, "p1")[:, candidates]
        reactive = np.nan_to_num(phase_block(batch, "q1")[:, candidates])
        neutral = neutral_all[candidates]
        slot = slot_all[candidates]
        three = self._three[slot]
        m = candidates.size

        with np.errstate(invalid="ignore", divide="ignore"):
            pf = np.abs(power) / (volts * current)
        pf = np.where(np.isfinite(pf) & (pf > 0.05) & (pf <= 1.05), pf, _DEFAULT_PF)

        # Single-phase: the unmetered current is the neutral/phase difference.
        i1 = current[0]
        single_mismatch = np.abs(neutral - i1)
        single_load = np.fmax(neutral, i1)

        # Three-phase: phasor sum of the metered phase currents. A phase's current lags its
        # voltage by the angle of (P, Q): its direction is (P - jQ)/|S| turned by the
        # phase's supply angle; no trigonometry per row.
        p_filled = np.nan_to_num(power)
        apparent = np.hypot(p_filled, reactive)
        with np.errstate(invalid="ignore", divide="ignore"):
            direction = np.where(apparent > 0, (p_filled - 1j * reactive) / apparent, 1.0 + 0j)
        unit = direction * _UNITS[:, None]
        computed = (np.nan_to_num(current) * unit).sum(axis=0)
        # Per phase, the extra current along its direction that would explain the neutral.
        along = computed[None, :] * np.conj(unit)
        disc = neutral[None, :] ** 2 - along.imag**2
        with np.errstate(invalid="ignore"):
            root = np.sqrt(disc)
            # The smaller non-negative root: the least unmetered current that explains it.
            low_root = -along.real - root
            delta = np.where(low_root >= 0, low_root, -along.real + root)
        delta = np.where((disc >= 0) & (delta >= 0), delta, np.inf)
        # Which phase: the one whose current fell most against its own recent level (the
        # neutral's magnitude alone cannot say); before that is known, the least current
        # that explains the neutral.
        usual = self.usual_a[:, slot]
        with np.errstate(invalid="ignore", divide="ignore"):
            fall = np.where(np.isfinite(delta) & (usual > 0), current / usual, np.inf)
        best = np.where(np.isfinite(fall).any(axis=0), fall.argmin(axis=0), delta.argmin(axis=0))
        rows = np.arange(m)
        explained = delta[best, rows]
        three_mismatch = np.abs(neutral - np.abs(computed))
        counted = np.isfinite(current).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            three_load = np.nansum(current, axis=0) / counted
        three_load = np.fmax(np.nan_to_num(three_load), neutral / 3.0)

        mismatch = np.where(three, three_mismatch, single_mismatch)
        load = np.where(three, three_load, single_load)
        measured = np.isfinite(load) & np.isfinite(mismatch)
        measured &= np.where(three, np.isfinite(power).all(axis=0), np.isfinite(i1))
        # A phase running backwards is the reversal detector's (its phasor is turned, so the
        # neutral disagrees too).
        reversed_phase = (p_filled < -_REVERSED_W).any(axis=0) & ~self._generation[slot]
        judged = measured & (load >= cfg.min_current_a) & ~reversed_phase
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = mismatch / load
        firing = judged & (ratio >= cfg.min_mismatch_ratio) & (mismatch >= cfg.min_mismatch_a)

        phase = np.where(three, best + 1, 1)
        unmetered_a = np.where(three & np.isfinite(explained), explained, mismatch)
        v_phase = np.nan_to_num(volts[phase - 1, rows], nan=0.0)
        v_phase = np.where(v_phase > 0, v_phase, ctx.fleet.ref_v[slot])
        loss = unmetered_a * v_phase * pf[phase - 1, rows]
        score = np.clip(0.5 + 0.5 * (np.nan_to_num(ratio) - cfg.min_mismatch_ratio) / 0.5, 0, 1)
        self._learn(ctx.dt[candidates], current, judged & ~firing, slot)
        out.holds[candidates[judged]] = CLEAR
        fired = candidates[firing]
        out.holds[fired] = HOLDS
        out.phase[fired] = phase[firing]
        out.loss_w[fired] = loss[firing]
        out.score[fired] = score[firing]
        out.magnitude[fired] = ratio[firing]
        return out

    def _learn(
        self,
        dt: FloatArray,
        current: FloatArray,
        clean: npt.NDArray[np.bool_],
        slot: npt.NDArray[np.int32],
    ) -> None:
        """Follow each phase's usual current (an hour's time constant) on clean rows."""
        size = self.usual_a.shape[1]
        seconds = np.where(clean, np.where(dt > 0, dt, 60.0), 0.0)
        covered = np.bincount(slot, weights=seconds, minlength=size).astype(np.float64)
        touched = np.flatnonzero(covered > 0)
        if touched.size == 0:
            return
        weight = ewma_weight(covered[touched], _USUAL_TAU_S)
        for k in range(3):
            sums = np.bincount(slot, weights=np.nan_to_num(current[k]) * seconds, minlength=size)
            mean = sums[touched] / covered[touched]
            old = self.usual_a[k, touched]
            self.usual_a[k, touched] = np.where(old > 0, old + weight * (mean - old), mean)

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the unmetered share and how long it has gone on."""
        return (
            f"{phase_label(facts.phase)}: neutral current shows up to "
            f"{facts.peak_magnitude:.0%} of the load current unmetered, for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
