"""Overload: a CT or a whole-current meter carrying more than 120 % of its rating, sustained.

Above 120 % of rated current a metering CT's core saturates and its secondary current
falls short of the ratio: the meter registers less than the load draws. A whole-current
meter run above its maximum current leaves its accuracy class and heats its terminals.
Unlike `ct_ratio`, which judges the typical load over working days, this judges each
reading, so that a load added yesterday shows within the hour.
"""

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
    MisfitConfig,
    format_duration,
    phase_label,
    register,
)
from detectors.context import BatchContext, phase_block
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity


class OverloadConfig(MisfitConfig):
    """Options of the overload detector."""

    raise_after_s: float = Field(
        default=1800.0,
        ge=0,
        description="Persistence before raising: longer than a motor start or a kettle.",
    )
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    overload_ratio: float = Field(
        default=1.2,
        gt=0,
        description="A phase current above this share of the rating (CT primary, or rated_a "
        "of a whole-current meter) fires.",
    )
    saturation_slope: float = Field(
        default=0.3,
        ge=0,
        lt=1,
        description="Share of the current a saturated CT loses per unit of load above "
        "overload_ratio, for the kWh estimate.",
    )


@register
class OverloadDetector(Detector):
    """Flags a customer's CT or meter loaded above its rating's overload limit."""

    name = "overload"
    kind = AlertKind.OVERLOAD
    # What a saturated core loses goes unrecorded too, but a CT overloaded from the start is
    # part of the transformer's gap already learned: not taken off the balance again.
    unmetered = False
    config_model = OverloadConfig
    needs = ("i1", "i2", "i3", "p1", "p2", "p3")
    requires = (("i1",),)

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, OverloadConfig)
        self.cfg = config
        # The CT's rating where there is one, else the meter's own; billing meters only.
        self.rating = registry.float_array(
            lambda m: (m.ct_primary_a or m.rated_a) if m.role == "customer" else None
        )
        self.peak_ratio = np.zeros(len(registry))

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each reading's highest phase current against the rating."""
        n = len(batch)
        if n == 0:
            return Conditions.none(0)
        cfg = self.cfg
        rating = self.rating[batch.slot]
        currents = phase_block(batch, "i1")
        measured = np.isfinite(currents)
        filled = np.where(measured, currents, -np.inf)
        worst = filled.argmax(axis=0)
        highest = filled[worst, np.arange(n)]
        judged = np.isfinite(rating) & measured.any(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(judged, highest / rating, 0.0)
        firing = judged & (ratio > cfg.overload_ratio)
        holds = np.where(judged, CLEAR, UNKNOWN).astype(np.int8)
        holds[firing] = HOLDS
        power = np.nansum(np.abs(phase_block(batch, "p1")), axis=0)
        # A saturated core loses a growing share of the current: the metered power is
        # (1 - lost) of the true one.
        lost = np.clip(cfg.saturation_slope * (ratio - cfg.overload_ratio), 0.0, 0.9)
        loss_w = power * lost / (1.0 - lost)
        if firing.any():
            np.maximum.at(self.peak_ratio, batch.slot[firing], ratio[firing])
        return Conditions(
            holds=holds,
            phase=np.where(firing & (measured.sum(axis=0) > 1), worst + 1, 0).astype(np.int8),
            loss_w=np.where(firing, loss_w, 0.0),
            score=np.where(firing, np.clip(0.6 + (ratio - cfg.overload_ratio), 0.0, 0.95), 0.0),
            magnitude=np.where(firing, ratio, 0.0),
        )

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the rating judged against and the highest load seen on it."""
        meter = self.registry.by_slot(slot)
        return {
            "rating_a": float(self.rating[slot]),
            "rating_of": "ct_primary_a" if meter.ct_primary_a else "rated_a",
            "peak_load_share": round(float(self.peak_ratio[slot]), 3),
            "overload_ratio": self.cfg.overload_ratio,
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the overload."""
        return (
            f"{phase_label(facts.phase)} current up to {facts.peak_magnitude:.0%} of the "
            f"CT or meter rating (above 120 %: saturation, under-registration), for "
            f"{format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
