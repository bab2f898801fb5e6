"""Reversal: negative active power on a phase at a customer that has no generation."""

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
    register,
)
from detectors.context import BatchContext
from meterguard.model import QUANTITY_INDEX, AlertKind, MeterRegistry, ReadingBatch


class ReversalConfig(DetectorConfig):
    """Options of the reversal detector."""

    min_power_w: float = Field(
        default=30.0,
        gt=0,
        description="A phase must export more than this, W, to count (noise and no-load drift).",
    )


@register
class ReversalDetector(Detector):
    """Flags a reversed CT or meter: a phase registers export where no export is possible."""

    name = "reversal"
    kind = AlertKind.REVERSAL
    config_model = ReversalConfig
    needs = ("p1", "p2", "p3")
    requires = (("p1",),)

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, ReversalConfig)
        self.min_power_w = config.min_power_w
        # Customers with solar or storage export legitimately; feeder meters are not billed.
        self._eligible = registry.flag_array(lambda m: not m.generation and m.role == "customer")

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Mark rows where some phase's active power is below -min_power_w."""
        n = len(batch)
        if n == 0:
            return Conditions.none(0)
        first = QUANTITY_INDEX["p1"]
        power = batch.values[first : first + 3]  # p1, p2, p3 are adjacent columns
        measured = ~np.isnan(power)
        filled = np.where(measured, power, 0.0)
        most_negative = filled.argmin(axis=0)
        lowest = filled[most_negative, np.arange(n)]
        eligible = self._eligible[batch.slot]
        holds = np.where(measured.any(axis=0), CLEAR, UNKNOWN).astype(np.int8)
        firing = eligible & (lowest < -self.min_power_w)
        holds[firing] = HOLDS
        exported = np.where(filled < -self.min_power_w, -filled, 0.0).sum(axis=0)
        score = np.clip(0.5 + 0.5 * (exported / (10.0 * self.min_power_w)), 0.0, 1.0)
        return Conditions(
            holds=holds,
            phase=np.where(firing, most_negative + 1, 0).astype(np.int8),
            loss_w=np.where(firing, exported, 0.0),
            score=np.where(firing, score, 0.0),
            magnitude=np.where(firing, exported, 0.0),
        )

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the reversed phase and how long it has run backwards."""
        where = f"phase {facts.phase}" if facts.phase else "meter"
        return (
            f"{where} active power reversed, up to {facts.peak_magnitude / 1000:.2f} kW "
            f"exported, for {format_duration(facts.duration_s)} at a customer without "
            f"generation"
        )
