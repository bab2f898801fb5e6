"""Wiring misfit: a three-phase three-wire (two-element) meter on an unbalanced load.

A 3p3w meter measures two line currents against the third line (the two-wattmeter, or
Aron, connection). That is exact only when the three line currents add up to zero: on a
supply with a neutral, an unbalanced or single-phase load returns current through the
neutral and the meter misregisters by V2 times that current's in-phase part, one way or
the other (a load on the unmeasured phase alone is not registered at all). The practice
therefore allows 3p3w metering only for balanced three-wire loads. A balanced load shows
equal element currents and element power angles 60° apart (φ+30° and φ-30°); unequal
currents or angles that are not 60° apart are unbalanced or single-phase use.
"""

from __future__ import annotations

import math
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
    MisfitConfig,
    format_duration,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

#: Power factor assumed for the energy at stake (the unmeasured phase's is not known).
_DEFAULT_PF = 0.9


class WiringMisfitConfig(MisfitConfig):
    """Options of the wiring-misfit detector."""

    raise_after_s: float = Field(
        default=1800.0, ge=0, description="Unbalanced use must persist this long, s."
    )
    severity: Severity = Field(default=Severity.MINOR, description="Severity of its alerts.")
    unbalance_ratio: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Element currents differing by more than this share of the larger fire.",
    )
    angle_tolerance_deg: float = Field(
        default=20.0,
        gt=0,
        description="Element power angles further than this from 60° apart fire.",
    )
    min_current_a: float = Field(
        default=2.0, gt=0, description="Below this element current, A, nothing is judged."
    )
    min_ct_share: float = Field(
        default=0.05,
        ge=0,
        description="Nor below this share of the CT rating (a CT's error is wide there).",
    )


@register
class WiringMisfitDetector(Detector):
    """Flags 3p3w meters whose load is unbalanced or single-phase."""

    name = "wiring_misfit"
    kind = AlertKind.WIRING_MISFIT
    config_model = WiringMisfitConfig
    needs = ("i1", "i3", "p1", "p3", "q1", "q3", "v1", "v3")
    requires = (("i1",), ("i3",))

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, WiringMisfitConfig)
        self.cfg = config
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and m.service == "3p3w")
        ct = np.nan_to_num(registry.float_array(lambda m: m.ct_primary_a))
        self.min_current = np.maximum(config.min_current_a, config.min_ct_share * ct)
        n = len(registry)
        self.peak_unbalance = np.zeros(n)
        self.peak_angle_gap = np.full(n, np.nan)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each reading's element currents and power angles."""
        n = len(batch)
        if n == 0:
            return Conditions.none(0)
        cfg = self.cfg
        # The two elements' currents: a 3p3w meter has no CT on line 2, and an i2 it reports
        # (zero, or computed from the other two) is no measurement.
        currents = phase_block(batch, "i1")[[0, 2]]
        measured = np.isfinite(currents)
        high = np.where(measured, currents, -np.inf).max(axis=0)
        low = np.where(measured, currents, np.inf).min(axis=0)
        judged = (
            self._eligible[batch.slot]
            & measured.all(axis=0)
            & (high >= self.min_current[batch.slot])
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            unbalance = np.where(judged, (high - low) / high, 0.0)
        power, reactive = phase_block(batch, "p1"), phase_block(batch, "q1")
        # The element angles, where both elements report P and Q (a 3p3w meter's second
        # element is on the third line: p3 and q3).
        gap = np.degrees(np.arctan2(reactive[0], power[0]) - np.arctan2(reactive[2], power[2]))
        gap = (gap + 180.0) % 360.0 - 180.0
        angle_off = np.where(judged & np.isfinite(gap), np.abs(gap - 60.0), 0.0)
        index = np.maximum(unbalance, angle_off / 60.0)
        firing = judged & (
            (unbalance > cfg.unbalance_ratio) | (angle_off > cfg.angle_tolerance_deg)
        )
        holds = np.where(judged, CLEAR, UNKNOWN).astype(np.int8)
        holds[firing] = HOLDS
        volts = phase_block(batch, "v1")
        seen = np.isfinite(volts).sum(axis=0)
        phase_v = np.nansum(volts, axis=0) / np.maximum(seen, 1) / math.sqrt(3)
        # What is at stake: the unbalanced part of the current, times the phase voltage.
        at_stake = np.abs(np.nan_to_num(currents[0] - currents[1])) / 2.0 * phase_v * _DEFAULT_PF
        if firing.any():
            rows = np.flatnonzero(firing)
            np.maximum.at(self.peak_unbalance, batch.slot[rows], unbalance[rows])
            self.peak_angle_gap[batch.slot[rows]] = gap[rows]
        return Conditions(
            holds=holds,
            phase=np.zeros(n, dtype=np.int8),
            loss_w=np.where(firing, np.nan_to_num(at_stake), 0.0),
            score=np.where(firing, np.clip(0.5 + 0.5 * index, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, index, 0.0),
        )

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the wiring and the unbalance seen."""
        gap = float(self.peak_angle_gap[slot])
        return {
            "service": self.registry.by_slot(slot).service,
            "peak_current_unbalance": round(float(self.peak_unbalance[slot]), 3),
            "element_angle_gap_deg": None if math.isnan(gap) else round(gap, 1),
            "balanced_angle_gap_deg": 60.0,
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the misfit."""
        return (
            f"three-phase three-wire (two-element) meter on an unbalanced or single-phase "
            f"load: unbalance up to {facts.peak_magnitude:.0%}, for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh at stake)"
        )
