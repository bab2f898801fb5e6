"""Reversal: negative active power on a phase at a customer that has no generation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
    CLEAR,
    HOLDS,
    P1_ROW,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    format_duration,
    register,
)
from detectors.context import BatchContext
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch


def _judge(
    values: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    eligible: npt.NDArray[np.bool_],
    min_power_w: float,
    holds: npt.NDArray[np.int8],
    phase: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
) -> None:
    """Judge every row's phases (p1, p2, p3; a missing one counts as 0 W); compiled."""
    for r in range(slot.shape[0]):
        measured = False
        lowest = np.inf
        most_negative = 0
        exported = 0.0
        for k in range(3):
            p = values[P1_ROW + k, r]
            measured |= not math.isnan(p)
            filled = 0.0 if math.isnan(p) else p
            if filled < lowest:
                lowest, most_negative = filled, k
            part = -filled if filled < -min_power_w else 0.0
            exported = part if k == 0 else exported + part
        if not measured:
            continue
        holds[r] = CLEAR
        if eligible[slot[r]] and lowest < -min_power_w:
            holds[r] = HOLDS
            phase[r] = most_negative + 1
            loss[r] = exported
            magnitude[r] = exported
            share = 0.5 + 0.5 * (exported / (10.0 * min_power_w))
            score[r] = min(max(share, 0.0), 1.0) if not math.isnan(share) else share


_judge_compiled = cast(Callable[..., None], numba.njit(cache=True)(_judge))


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
    unmetered = True
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
        out = Conditions.unknown(len(batch))
        _judge_compiled(batch.values, batch.slot, self._eligible, self.min_power_w, *out.outputs())
        return out

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the reversed phase and how long it has run backwards."""
        where = f"phase {facts.phase}" if facts.phase else "meter"
        return (
            f"{where} active power reversed, up to {facts.peak_magnitude / 1000:.2f} kW "
            f"exported, for {format_duration(facts.duration_s)} at a customer without "
            f"generation"
        )
