"""Bypass: current that passes a metering element unseen, shown by the neutral current."""

from __future__ import annotations

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
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch

#: Supply voltage phasor angles of L1, L2, L3 (radians).
_ANGLES = np.array([0.0, -2.0 * np.pi / 3.0, 2.0 * np.pi / 3.0])
_DEFAULT_PF = 0.95


class BypassConfig(DetectorConfig):
    """Options of the bypass detector."""

    min_current_a: float = Field(
        default=0.3, gt=0, description="Below this current, A, a mismatch cannot be told."
    )
    min_mismatch_ratio: float = Field(
        default=0.15,
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

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Mark rows whose neutral current disagrees with the metered phase currents."""
        n = len(batch)
        cfg = self.cfg
        current = phase_block(batch, "i1")
        volts = phase_block(batch, "v1")
        power = phase_block(batch, "p1")
        reactive = phase_block(batch, "q1")
        neutral = batch.col("in")
        three = self._three[batch.slot]
        eligible = self._eligible[batch.slot] & np.isfinite(neutral)

        with np.errstate(invalid="ignore", divide="ignore"):
            pf = np.abs(power) / (volts * current)
        pf = np.where(np.isfinite(pf) & (pf > 0.05) & (pf <= 1.05), pf, _DEFAULT_PF)

        # Single-phase: the unmetered current is the neutral/phase difference.
        i1 = current[0]
        single_mismatch = np.abs(neutral - i1)
        single_load = np.fmax(neutral, i1)

        # Three-phase: phasor sum of the metered phase currents, then per phase the extra
        # current along that phase's angle that would explain the measured neutral.
        angle = _ANGLES[:, None] - np.arctan2(np.nan_to_num(reactive), np.nan_to_num(power))
        filled = np.nan_to_num(current)
        computed = (filled * np.exp(1j * angle)).sum(axis=0)
        unit = np.exp(1j * angle)
        along = computed[None, :] * np.conj(unit)
        disc = neutral[None, :] ** 2 - along.imag**2
        with np.errstate(invalid="ignore"):
            delta = -along.real + np.sqrt(disc)
        delta = np.where((disc >= 0) & (delta >= 0), delta, np.inf)
        best = delta.argmin(axis=0)
        explained = delta[best, np.arange(n)]
        three_mismatch = np.abs(neutral - np.abs(computed))
        three_load = (
            np.nanmean(np.where(np.isfinite(current), current, np.nan), axis=0)
            if n
            else (np.zeros(0))
        )
        three_load = np.fmax(np.nan_to_num(three_load), neutral / 3.0)

        mismatch = np.where(three, three_mismatch, single_mismatch)
        load = np.where(three, three_load, single_load)
        measured = eligible & np.isfinite(load) & np.isfinite(mismatch)
        measured &= np.where(three, np.isfinite(power).all(axis=0), np.isfinite(i1))
        judged = measured & (load >= cfg.min_current_a)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = mismatch / load
        firing = judged & (ratio >= cfg.min_mismatch_ratio) & (mismatch >= cfg.min_mismatch_a)

        holds = np.full(n, UNKNOWN, dtype=np.int8)
        holds[judged] = CLEAR
        holds[firing] = HOLDS
        phase = np.where(three, best + 1, 1)
        unmetered_a = np.where(
            three, np.where(np.isfinite(explained), explained, mismatch), mismatch
        )
        rows = np.arange(n)
        v_phase = np.nan_to_num(volts[phase - 1, rows], nan=0.0)
        v_phase = np.where(v_phase > 0, v_phase, ctx.fleet.ref_v[batch.slot])
        loss = unmetered_a * v_phase * pf[phase - 1, rows]
        score = np.clip(0.5 + 0.5 * (np.nan_to_num(ratio) - cfg.min_mismatch_ratio) / 0.5, 0, 1)
        return Conditions(
            holds=holds,
            phase=np.where(firing, phase, 0).astype(np.int8),
            loss_w=np.where(firing, loss, 0.0),
            score=np.where(firing, score, 0.0),
            magnitude=np.where(firing, np.nan_to_num(ratio), 0.0),
        )

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the unmetered share and how long it has gone on."""
        return (
            f"{phase_label(facts.phase)}: neutral current shows up to "
            f"{facts.peak_magnitude:.0%} of the load current unmetered, for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
