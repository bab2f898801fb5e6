"""Voltage loss: one phase's voltage far below its neighbours' while current flows on it."""

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
        default=0.2, gt=0, description="Current must flow on the low phase, A."
    )


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
        n = len(batch)
        cfg = self.cfg
        slot = batch.slot
        volts = phase_block(batch, "v1")
        current = phase_block(batch, "i1")
        power = phase_block(batch, "p1")
        ref = ctx.fleet.ref_v[slot]
        rel = volts / ref
        neighbours = ctx.neighbour_voltage()
        # Without neighbours in the same minute, the meter's own healthiest phase is the
        # reference (three-phase only: a lone single-phase meter cannot be told from a sag).
        own_best = np.nanmax(np.where(np.isfinite(rel), rel, -np.inf), axis=0)
        own_best = np.where(np.isfinite(own_best), own_best, np.nan)
        three = ctx.fleet.three_phase[slot]
        reference = np.where(np.isfinite(neighbours), neighbours, np.where(three, own_best, np.nan))
        flowing = current >= cfg.min_current_a
        measured = np.isfinite(rel) & np.isfinite(current)
        low = measured & flowing & (rel < cfg.max_ratio) & (reference >= cfg.healthy_ratio)
        # A phase on which the meter's own best phase is low too is a service-wide sag.
        judged = measured & flowing & np.isfinite(reference)
        eligible = self._eligible[slot]
        firing = eligible & low.any(axis=0)
        holds = np.full(n, UNKNOWN, dtype=np.int8)
        holds[eligible & judged.any(axis=0)] = CLEAR
        holds[firing] = HOLDS
        depth = np.where(low, reference - rel, -np.inf)
        worst = depth.argmax(axis=0)
        rows = np.arange(n)
        true_v = np.nan_to_num(reference[worst, rows]) * ref
        lost = true_v * np.nan_to_num(current[worst, rows]) * _DEFAULT_PF - np.nan_to_num(
            power[worst, rows]
        )
        shortfall = np.nan_to_num(1.0 - rel[worst, rows] / np.maximum(reference[worst, rows], 1e-6))
        return Conditions(
            holds=holds,
            phase=np.where(firing, worst + 1, 0).astype(np.int8),
            loss_w=np.where(firing, np.maximum(lost, 0.0), 0.0),
            score=np.where(firing, np.clip(0.5 + shortfall, 0.0, 1.0), 0.0),
            magnitude=np.where(firing, shortfall, 0.0),
        )

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the low phase."""
        return (
            f"{phase_label(facts.phase)} voltage up to {facts.peak_magnitude:.0%} below its "
            f"neighbours while current flows, for {format_duration(facts.duration_s)} "
            f"({facts.kwh_lost:.1f} kWh est.)"
        )
