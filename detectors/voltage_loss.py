"""Voltage loss: one phase's voltage far below its neighbours' while current flows on it."""

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
    I1_ROW,
    P1_ROW,
    V1_ROW,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    format_duration,
    phase_label,
    register,
)
from detectors.compiled import nan_to_num_compiled
from detectors.context import BatchContext
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch

_DEFAULT_PF = 0.95


class VoltageLossConfig(DetectorConfig):
    """Options of the voltage-loss detector."""

    max_ratio: float = Field(
        default=0.8, gt=0, lt=1, description="A phase below this share of its reference fires."
    )
    healthy_ratio: float = Field(
        default=0.9,
        gt=0,
        description="Neighbours (or, alone, the meter's other phases) at least this high "
        "make the low phase local to the meter, not a supply-side sag.",
    )
    min_current_a: float = Field(
        default=0.1,
        gt=0,
        description="Current must flow on the low phase, A (a night's standby load does: "
        "the loss is theft whatever the load; a dead phase draws nothing).",
    )


def _judge(  # one pass over the rows, the numpy expression's arithmetic in its order
    values: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    ref_v: npt.NDArray[np.float64],
    three: npt.NDArray[np.bool_],
    eligible: npt.NDArray[np.bool_],
    neighbours: npt.NDArray[np.float64],
    min_current: float,
    max_ratio: float,
    healthy_ratio: float,
    holds: npt.NDArray[np.int8],
    phase: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
) -> None:
    """Judge every row against its neighbours (or its own best phase); compiled.

    Without neighbours in the same minute, the meter's own healthiest phase is the
    reference (three-phase only: a lone single-phase meter cannot be told from a sag).
    """
    rel = np.empty(3)
    reference = np.empty(3)
    for r in range(slot.shape[0]):
        s = slot[r]
        ref = ref_v[s]
        own_best = -np.inf
        for k in range(3):
            rel[k] = values[V1_ROW + k, r] / ref
            if math.isfinite(rel[k]) and rel[k] > own_best:
                own_best = rel[k]
        if not math.isfinite(own_best):
            own_best = np.nan
        judged = False
        # A phase still low while it draws too little to tell: the row cannot say the loss
        # is over (the home switched its load off, the link is still cut).
        low_untold = False
        worst = 0
        deepest = -np.inf
        for k in range(3):
            near = neighbours[k, r]
            reference[k] = near if math.isfinite(near) else (own_best if three[s] else np.nan)
            current = values[I1_ROW + k, r]
            usable = math.isfinite(rel[k]) and math.isfinite(current) and current >= min_current
            judged |= usable and math.isfinite(reference[k])
            low = rel[k] < max_ratio and reference[k] >= healthy_ratio
            low_untold |= low and not usable
            if usable and low:
                depth = reference[k] - rel[k]
                if depth > deepest:
                    worst, deepest = k, depth
        if not eligible[s]:
            continue
        if judged and not low_untold:
            holds[r] = CLEAR
        if deepest == -np.inf:
            continue  # no low phase: not firing
        holds[r] = HOLDS
        phase[r] = worst + 1
        best = reference[worst]
        lost = (
            nan_to_num_compiled(best) * ref * nan_to_num_compiled(values[I1_ROW + worst, r])
            * _DEFAULT_PF
            - nan_to_num_compiled(values[P1_ROW + worst, r])
        )  # fmt: skip
        loss[r] = lost if (lost >= 0.0 or math.isnan(lost)) else 0.0
        floor = best if (best >= 1e-6 or math.isnan(best)) else 1e-6
        shortfall = nan_to_num_compiled(1.0 - rel[worst] / floor)
        score[r] = min(max(0.5 + shortfall, 0.0), 1.0)
        magnitude[r] = shortfall


_judge_compiled = cast(Callable[..., None], numba.njit(cache=True)(_judge))


@register
class VoltageLossDetector(Detector):
    """Flags the under-voltage method: a low phase voltage its neighbours do not see.

    The neighbours are the other meters on the same transformer and phase; current must
    still flow on the low phase. Limitation: the registry does not say which transformer
    phase feeds a single-phase meter, so its `v1` is compared with the neighbours' `v1`
    column (phase 1 of three-phase meters, `v1` of the other single-phase meters). A
    single-phase meter on phase 2 or 3 during a sag of that phase alone can therefore be
    judged against healthy phase-1 neighbours and fire.
    """

    name = "voltage_loss"
    kind = AlertKind.VOLTAGE_LOSS
    unmetered = True
    config_model = VoltageLossConfig
    needs = ("v1", "v2", "v3", "i1", "i2", "i3", "p1", "p2", "p3")
    requires = (("v1",), ("i1",))

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, VoltageLossConfig)
        self.cfg = config
        self._eligible = registry.flag_array(lambda m: m.role == "customer")

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Mark rows with a low phase voltage the neighbourhood does not share."""
        out = Conditions.unknown(len(batch))
        cfg = self.cfg
        _judge_compiled(
            batch.values,
            batch.slot,
            ctx.fleet.ref_v,
            ctx.fleet.three_phase,
            self._eligible,
            ctx.neighbour_voltage(),
            cfg.min_current_a,
            cfg.max_ratio,
            cfg.healthy_ratio,
            *out.outputs(),
        )
        return out

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the low phase."""
        return (
            f"{phase_label(facts.phase)} voltage up to {facts.peak_magnitude:.0%} below its "
            f"neighbours while current flows, for {format_duration(facts.duration_s)} "
            f"({facts.kwh_lost:.1f} kWh est.)"
        )
