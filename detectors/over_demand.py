"""Over-demand: sustained demand above the contracted capacity (undeclared added load).

A customer whose demand stays well above the capacity it contracted has added load
without declaring it (违约用电, 私增容量): its supply, CT and tariff were sized for less.
Demand is the mean power over a demand window (15 minutes, as demand registers keep it),
so a motor's start-up peak of a few minutes is not demand; persistence then asks for the
excess over `raise_after_s` (2 hours) of data time: a household's cooking or a washing
machine's heater lifts the demand of a small contract for half an hour or so, added load
stays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
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


class OverDemandConfig(MisfitConfig):
    """Options of the over-demand detector."""

    raise_after_s: float = Field(
        default=7200.0, ge=0, description="Demand must stay above the limit this long, s."
    )
    severity: Severity = Field(default=Severity.MINOR, description="Severity of its alerts.")
    margin: float = Field(
        default=0.10,
        ge=0,
        description="Demand above contracted_kw by more than this share fires.",
    )
    demand_window_s: float = Field(
        default=900.0,
        gt=0,
        description="Demand is the mean power over this much data time (a reading spanning "
        "it or more is its own demand).",
    )


def _demand(
    power: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    dt: npt.NDArray[np.float64],
    contracted_w: npt.NDArray[np.float64],
    demand: npt.NDArray[np.float64],
    limits: npt.NDArray[np.float64],
    holds: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
) -> None:
    """Update each meter's running demand row by row and judge it; compiled.

    A reading stands for the interval since the meter's previous one, so its weight in
    the demand is that interval over the window (at most all of it): 1-minute and
    15-minute readings of one load give the same demand.
    """
    margin, window = limits[0], limits[1]
    for r in range(slot.shape[0]):
        s = slot[r]
        limit = contracted_w[s]
        if math.isnan(limit) or limit <= 0.0 or math.isnan(power[r]):
            continue
        if dt[r] <= 0.0 or math.isnan(demand[s]):
            # The first reading, or the first after a silence: demand starts afresh.
            demand[s] = power[r]
            continue
        weight = min(dt[r] / window, 1.0)
        demand[s] += weight * (power[r] - demand[s])
        share = demand[s] / limit
        holds[r] = 0
        if share > 1.0 + margin:
            holds[r] = 1
            loss[r] = demand[s] - limit
            score[r] = min(0.5 + (share - 1.0 - margin), 0.95)
            magnitude[r] = share


_demand_compiled = cast(Callable[..., None], numba.njit(cache=True)(_demand))


@register
class OverDemandDetector(Detector):
    """Flags customers whose demand stays above their contracted capacity."""

    name = "over_demand"
    kind = AlertKind.OVER_DEMAND
    config_model = OverDemandConfig
    needs = ("p1", "p2", "p3")
    requires = (("p1",),)

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, OverDemandConfig)
        self.cfg = config
        self.contracted_w = registry.float_array(
            lambda m: m.contracted_kw * 1000.0 if m.role == "customer" and m.contracted_kw else None
        )
        self.demand = np.full(len(registry), np.nan)
        self.peak_demand = np.zeros(len(registry))
        self._limits = np.array([config.margin, config.demand_window_s])

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each reading's running demand against the contracted capacity."""
        out = Conditions.unknown(len(batch))
        if len(batch) == 0:
            return out
        block = phase_block(batch, "p1")
        power = np.where(np.isfinite(block).any(axis=0), np.nansum(block, axis=0), np.nan)
        _demand_compiled(
            np.ascontiguousarray(power),
            batch.slot,
            ctx.dt,
            self.contracted_w,
            self.demand,
            self._limits,
            out.holds,
            out.loss_w,
            out.score,
            out.magnitude,
        )
        firing = out.holds == 1
        if firing.any():
            np.maximum.at(self.peak_demand, batch.slot[firing], out.magnitude[firing])
        return out

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the contracted capacity and the demand seen against it."""
        return {
            "contracted_kw": round(float(self.contracted_w[slot]) / 1000.0, 3),
            "peak_demand_share": round(float(self.peak_demand[slot]), 3),
            "demand_window_s": self.cfg.demand_window_s,
            "margin": self.cfg.margin,
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the excess demand."""
        return (
            f"demand up to {facts.peak_magnitude:.0%} of the contracted capacity (load added "
            f"without declaring it), for {format_duration(facts.duration_s)} "
            f"({facts.kwh_lost:.1f} kWh above the contract)"
        )
