"""Imbalance: one phase's share of the current collapses against the meter's own history."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
    I1_ROW,
    IN_ROW,
    V1_ROW,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    format_duration,
    phase_label,
    register,
)
from detectors.context import BatchContext
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

_DEFAULT_PF = 0.95


class ImbalanceConfig(DetectorConfig):
    """Options of the imbalance detector."""

    raise_after_s: float = Field(
        default=600.0,
        ge=0,
        description="Persistence before raising (longer than an appliance cycle).",
    )
    clear_after_s: float = Field(default=1800.0, ge=0, description="Absence before clearing.")
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    min_total_a: float = Field(
        default=1.0, gt=0, description="Below this total current, A, shares are not judged."
    )
    min_base_share: float = Field(
        default=0.08, ge=0, lt=1, description="A phase normally carrying less is not judged."
    )
    collapse_ratio: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="A phase whose share falls below this fraction of its usual share fires.",
    )
    median_step: float = Field(
        default=0.001,
        gt=0,
        description="Step of the per-phase median share tracker per minute of data (at most "
        "5 % of the share per reading, never less than a minute's step).",
    )
    warmup_s: float = Field(
        default=6 * 3600.0, ge=0, description="Data time of learning before it may fire, s."
    )


def _judge(
    values: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    dt: npt.NDArray[np.float64],
    eligible: npt.NDArray[np.bool_],
    ref_v: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    learned: npt.NDArray[np.float64],
    limits: npt.NDArray[np.float64],
    holds: npt.NDArray[np.int8],
    phase: npt.NDArray[np.int8],
    loss: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    magnitude: npt.NDArray[np.float64],
) -> None:
    """Judge each phase against what the other phases predict for it, then learn; compiled.

    Each other phase predicts this phase's current from the usual shares. An appliance
    switching on another phase inflates one prediction only, so a phase counts as
    collapsed when it is low against EVERY other phase that normally carries load (and
    two others must). The usual shares are running medians: a step up or down per minute
    of clean data, which the minutes an appliance runs on one phase do not pull.
    """
    min_total, min_base, collapse, median_step, warmup = (
        limits[0], limits[1], limits[2], limits[3], limits[4],
    )  # fmt: skip
    v0, i0, n_col = V1_ROW, I1_ROW, IN_ROW
    share = np.empty(3)
    for r in range(slot.shape[0]):
        s = slot[r]
        # A measured neutral lets the bypass detector judge the row from physics instead.
        if not eligible[s] or not math.isnan(values[n_col, r]):
            continue
        total = 0.0
        usable = True
        for k in range(3):
            amps = values[i0 + k, r]
            volts = values[v0 + k, r]
            if math.isnan(amps) or math.isnan(volts) or volts < 0.85 * ref_v[s]:
                usable = False
                break
            total += amps
        if not usable or total < min_total:
            continue
        for k in range(3):
            share[k] = values[i0 + k, r] / total
        warm = learned[s] >= warmup
        carried = 0
        for k in range(3):
            if base[k, s] >= min_base:
                carried += 1
        worst_k = -1
        worst_ratio = np.inf
        worst_expected = 0.0
        judgeable = False
        for k in range(3):
            if not base[k, s] >= min_base or carried - 1 < 2:
                continue
            best = -np.inf
            lowest = np.inf
            for j in range(3):
                if j == k or not base[j, s] >= min_base:
                    continue
                predicted = values[i0 + j, r] * base[k, s] / base[j, s]
                if predicted > 0:
                    best = max(best, values[i0 + k, r] / predicted)
                    lowest = min(lowest, predicted)
            if best == -np.inf:
                continue
            judgeable = True
            if best < worst_ratio:
                worst_ratio = best
                worst_k = k
                worst_expected = lowest
        firing = warm and judgeable and worst_ratio < collapse
        if warm and judgeable:
            holds[r] = 0
        if firing:
            metered = values[i0 + worst_k, r]
            deficit = min(max(1.0 - worst_ratio, 0.0), 1.0)
            holds[r] = 1
            phase[r] = worst_k + 1
            loss[r] = max(worst_expected - metered, 0.0) * values[v0 + worst_k, r] * _DEFAULT_PF
            score[r] = 0.5 + 0.5 * deficit
            magnitude[r] = deficit
        if firing and warm:
            continue
        # Learn from every row while warming up (a baseline that refused to learn from what
        # it flags could never correct a bad start), afterwards only from clean rows.
        step_s = dt[r] if dt[r] > 0 else 60.0
        for k in range(3):
            old = base[k, s]
            # At most 5 % of the share per reading (never less than a minute's step): read
            # every 15 or 30 minutes, one sampled appliance burst would otherwise lift a small
            # phase's usual share by a fifth, its honest readings would then look
            # collapsed, and a baseline that does not learn from what it flags would never
            # come back down.
            step = min(median_step * step_s / 60.0, max(0.05 * old, median_step))
            if math.isnan(old):
                base[k, s] = share[k]
            elif share[k] > old:
                base[k, s] = min(old + step, share[k])
            elif share[k] < old:
                base[k, s] = max(old - step, share[k])
        learned[s] += step_s


_judge_compiled = cast(Callable[..., None], numba.njit(cache=True)(_judge))


@register
class ImbalanceDetector(Detector):
    """Flags one phase under-registering on a three-phase meter without neutral measurement.

    A phase's current collapsing against that phase's own history while its voltage and
    the other phases carry on.
    """

    name = "imbalance"
    kind = AlertKind.IMBALANCE
    unmetered = True
    config_model = ImbalanceConfig
    needs = ("i1", "i2", "i3", "v1", "v2", "v3", "in")
    requires = (("i1",), ("v1",))

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, ImbalanceConfig)
        self.cfg = config
        # Solar or storage behind the meter moves each phase's net current at will.
        self._eligible = registry.flag_array(
            lambda m: m.role == "customer" and m.phases == 3 and not m.generation
        )
        n = len(registry)
        self.base_share = np.full((3, n), np.nan)
        self.learned_s = np.zeros(n)
        self._limits = np.array(
            [
                config.min_total_a,
                config.min_base_share,
                config.collapse_ratio,
                config.median_step,
                config.warmup_s,
            ]
        )

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge each phase against what the other phases predict for it, then learn."""
        out = Conditions.unknown(len(batch))
        _judge_compiled(
            np.ascontiguousarray(batch.values),
            batch.slot,
            ctx.dt,
            self._eligible,
            ctx.fleet.ref_v,
            self.base_share,
            self.learned_s,
            self._limits,
            *out.outputs(),
        )
        return out

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the usual phase shares the collapse was judged against."""
        return {"usual_phase_shares": [round(float(s), 3) for s in self.base_share[:, slot]]}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the collapsed phase."""
        return (
            f"{phase_label(facts.phase)} current share down {facts.peak_magnitude:.0%} against "
            f"its own history with normal voltage, for {format_duration(facts.duration_s)} "
            f"({facts.kwh_lost:.1f} kWh est.)"
        )
