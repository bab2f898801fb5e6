"""Comms loss: a meter falls silent while its transformer still carries load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.base import (
    HOLDS,
    P1_ROW,
    V1_ROW,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    SlotConditions,
    ewma_weight,
    format_duration,
    register,
)
from detectors.compiled import nan_to_num_compiled, phase_sum_compiled
from detectors.context import BatchContext
from meterguard.model import AlertKind, MeterEvent, MeterRegistry, ReadingBatch, Severity

_POWER_DOWN = int(MeterEvent.POWER_DOWN)


def _follow(
    values: npt.NDArray[np.float64],
    ts: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int32],
    events: npt.NDArray[np.uint32],
    ref_v: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    last_live: npt.NDArray[np.float64],
    last_was_live: npt.NDArray[np.bool_],
    usual_w: npt.NDArray[np.float64],
) -> None:
    """Follow each meter's live readings and usual power over the rows; compiled.

    A row is live when some phase has half its reference voltage and the meter did not
    say power_down. A meter's latest row (by time, then row) says whether it was last
    live; its usual power moves from the value before the batch, the last row's move
    standing (as numpy's indexed assignment leaves it).
    """
    n = ts.shape[0]
    latest = np.full(last_live.shape[0], -np.inf)
    moved = np.empty(n)
    for r in range(n):
        s = slot[r]
        half = 0.5 * ref_v[s]
        live = False
        power = phase_sum_compiled(values, P1_ROW, r)
        for k in range(3):
            if nan_to_num_compiled(values[V1_ROW + k, r]) >= half:
                live = True
        live = live and (events[r] & _POWER_DOWN) == 0
        if ts[r] >= latest[s]:
            latest[s] = ts[r]
            last_was_live[s] = live
        if live and ts[r] > last_live[s]:
            last_live[s] = ts[r]
        moved[r] = usual_w[s] + weight[r] * (power - usual_w[s])
    for r in range(n):
        usual_w[slot[r]] = moved[r]


_follow_compiled = cast(Callable[..., None], numba.njit(cache=True)(_follow))


class CommsLossConfig(DetectorConfig):
    """Options of the comms-loss detector."""

    raise_after_s: float = Field(
        default=0.0, ge=0, description="Extra wait after silence_s before raising."
    )
    clear_after_s: float = Field(default=0.0, ge=0, description="Clears on the next reading.")
    severity: Severity = Field(default=Severity.MINOR, description="Severity of its alerts.")
    silence_s: float = Field(
        default=900.0, gt=0, description="Silence this long (data time) counts as lost."
    )
    missed_readings: float = Field(
        default=5.0, gt=1, description="Or this many of the meter's own intervals, if longer."
    )


@register
class CommsLossDetector(Detector):
    """Flags a meter silent while its transformer still carries load.

    Data time is the latest reading of any meter: a meter whose own readings stopped
    while another meter on its transformer still reports live voltage has gone silent on
    its own. A dead transformer, or a meter that said power_down, raises nothing.
    """

    name = "comms_loss"
    kind = AlertKind.COMMS_LOSS
    config_model = CommsLossConfig

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, CommsLossConfig)
        self.cfg = config
        n = len(registry)
        self.interval_s = np.full(n, np.nan)
        self.last_live = np.full(n, -np.inf)
        self.last_was_live = np.zeros(n, dtype=np.bool_)
        self.usual_w = np.zeros(n)

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Every reading says its meter is not silent; remember who was live, and when."""
        _follow_compiled(
            batch.values,
            batch.ts,
            batch.slot,
            batch.events,
            ctx.fleet.ref_v,
            ewma_weight(ctx.dt, 3600.0),
            self.last_live,
            self.last_was_live,
            self.usual_w,
        )
        return Conditions.none(len(batch))

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Judge silence at the batch's data time, against the meter's transformer."""
        fleet = ctx.fleet
        now = ctx.now
        interval = np.where(np.isfinite(ctx.interval_s), ctx.interval_s, 60.0)
        limit = np.maximum(self.cfg.silence_s, self.cfg.missed_readings * interval)
        silent = np.isfinite(ctx.last_seen) & (now - ctx.last_seen >= limit)
        silent &= self.last_was_live & (fleet.transformer >= 0)
        if not silent.any() or fleet.n_transformers == 0:
            return None
        trafo = fleet.transformer
        alive_at = np.full(fleet.n_transformers, -np.inf)
        has = trafo >= 0
        np.maximum.at(alive_at, trafo[has], self.last_live[has])
        # The silent meter's own last live reading is older than the limit, so any recent
        # live reading on the transformer comes from another meter.
        supplied = now - alive_at[np.maximum(trafo, 0)] < limit
        slots = np.flatnonzero(silent & supplied).astype(np.int32)
        if slots.size == 0:
            return None
        k = slots.size
        self.interval_s[slots] = interval[slots]
        silence = now - ctx.last_seen[slots]
        cond = Conditions(
            holds=np.full(k, HOLDS, dtype=np.int8),
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.zeros(k),
            score=np.clip(0.5 + 0.5 * silence / (4 * limit[slots]), 0.0, 0.95),
            magnitude=silence,
            onset=ctx.last_seen[slots] + interval[slots],
        )
        return SlotConditions(slot=slots, conditions=cond, dt=np.zeros(k))

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the last reading time, the usual interval and the usual power."""
        return {
            "usual_interval_s": round(float(np.nan_to_num(self.interval_s[slot], nan=60.0)), 1),
            "usual_power_w": round(float(self.usual_w[slot]), 1),
        }

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the silence."""
        return (
            f"meter silent for {format_duration(facts.duration_s)} while its transformer "
            f"still carries load"
        )
