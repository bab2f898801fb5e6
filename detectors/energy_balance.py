"""Energy balance: a transformer's check meter measures more than its customers plus losses."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from detectors.balance import GapModel
from detectors.base import (
    CLEAR,
    HOLDS,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    SlotConditions,
    format_duration,
    register,
)
from detectors.context import BatchContext
from meterguard.losses import DEFAULT_GAP_MARGIN, DEFAULT_LOSS_ALLOWANCE
from meterguard.model import AlertKind, MeterRegistry, ReadingBatch, Severity

HOUR_S = 3600.0


class EnergyBalanceConfig(DetectorConfig):
    """Options of the energy-balance detector."""

    raise_after_s: float = Field(
        default=HOUR_S,
        ge=0,
        description="Unexplained energy must persist this long after the first hour that "
        "showed it (hourly windows) before raising.",
    )
    clear_after_s: float = Field(default=7200.0, ge=0, description="Absence before clearing.")
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    loss_allowance: float = Field(
        default=DEFAULT_LOSS_ALLOWANCE,
        ge=0,
        lt=1,
        description="Technical losses allowed, as a share of the feeder's energy, until the "
        "transformer's own losses are learned (and never above it once they are).",
    )
    gap_margin: float = Field(
        default=DEFAULT_GAP_MARGIN,
        ge=0,
        description="Unexplained energy must pass this share of the feeder's energy ...",
    )
    noise_sigmas: float = Field(
        default=4.0,
        gt=0,
        description="... and this many of the transformer's own spread of the gap.",
    )
    min_excess_w: float = Field(
        default=300.0, ge=0, description="... and this mean power over the hour, W."
    )
    learn_days: float = Field(
        default=7.0,
        gt=0,
        description="Memory of the loss model and of the gap's spread, days of clean hours.",
    )
    step_w: float = Field(
        default=1000.0,
        gt=0,
        description="A rise of the unexplained power by this much, W, within two windows "
        "while an alert is open is a new incident (and a new alert).",
    )
    step_share: float = Field(
        default=0.1, gt=0, description="... and by at least this share of the level before."
    )


@register
class EnergyBalanceDetector(Detector):
    """Flags a transformer whose check meter sees more than its customers plus losses.

    Per transformer and hour (from the hourly ledger): the check meter's energy against the
    sum of its customers'. The normal gap is learned from the transformer's own clean hours:
    technical losses as a share that grows with the load (I²R), corrected by day type and
    hour of the day (an unmetered street light at night), with the spread around it. Before
    a day of clean hours is seen, the loss allowance stands in. Raised on the feeder meter.
    """

    name = "energy_balance"
    kind = AlertKind.ENERGY_BALANCE
    config_model = EnergyBalanceConfig
    needs = ("p1", "p2", "p3", "e_imp")
    requires = (("e_imp", "p1"),)

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, EnergyBalanceConfig)
        self.cfg = config
        names: dict[str, int] = {}
        for meter in registry:
            if meter.transformer:
                names.setdefault(meter.transformer, len(names))
        nt = len(names)
        self.feeder_slot = np.full(nt, -1, dtype=np.int32)
        for slot, meter in enumerate(registry):
            if meter.role == "feeder" and meter.transformer:
                self.feeder_slot[names[meter.transformer]] = slot
        self.gap = GapModel(nt, config.learn_days, config.loss_allowance)
        self.previous = np.full((2, nt), np.nan)
        self.hours_since_start = np.zeros(nt, dtype=np.int64)
        self.firing = np.zeros(nt, dtype=np.bool_)
        self.figures: dict[int, dict[str, float]] = {}
        self._pending: list[SlotConditions] = []

    # ------------------------------------------------------------ judging hours

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Judge the transformer hours the ledger closed with this tick."""
        self._judge(ctx)
        return Conditions.unknown(len(batch))

    def _judge(self, ctx: BatchContext) -> None:
        bal = ctx.balances
        if len(bal.hour) == 0:
            return
        cfg = self.cfg
        usable = bal.complete & (self.feeder_slot[bal.transformer] >= 0)
        t = bal.transformer[usable]
        hours = bal.hour[usable]
        feeder_w = bal.feeder_wh[usable]  # an hour's Wh is its mean power in W
        customers_w = bal.customers_wh[usable]
        if t.size == 0:
            return
        order = np.argsort(hours, kind="stable")
        t, hours, feeder_w, customers_w = (
            t[order],
            hours[order],
            feeder_w[order],
            customers_w[order],
        )
        local_hour, day_type = ctx.calendar.hours(hours)
        load = np.abs(feeder_w)
        gap = feeder_w - customers_w
        expected, spread, learned = self.gap.expected(t, feeder_w, day_type, local_hour)
        excess = gap - expected
        # A learned hour is judged by its spread; before, by the allowance alone.
        limit = np.maximum.reduce(
            [
                np.full(t.size, cfg.min_excess_w),
                cfg.gap_margin * load,
                np.where(learned, cfg.noise_sigmas * spread, 0.0),
            ]
        )
        limit = np.where(learned & (spread > cfg.loss_allowance * load), spread, limit)
        firing = excess > limit
        clean = ~firing
        self.gap.learn(t[clean], feeder_w[clean], gap[clean], day_type[clean], local_hour[clean])
        # A new source of unmetered power on a transformer that already had one is a new
        # incident: a step above the lower of the two hours before.
        restart = np.zeros(t.size, dtype=np.bool_)
        for k in range(t.size):
            tr = int(t[k])
            before = np.fmin(self.previous[0, tr], self.previous[1, tr])
            step = excess[k] - before
            restart[k] = bool(
                firing[k]
                and self.firing[tr]
                and self.hours_since_start[tr] >= 2
                and step >= max(cfg.step_w, cfg.step_share * max(before, 0.0))
            )
            starting = firing[k] and (not self.firing[tr] or restart[k])
            self.hours_since_start[tr] = 0 if starting else self.hours_since_start[tr] + 1
            self.previous[1, tr] = self.previous[0, tr]
            self.previous[0, tr] = excess[k]
            self.firing[tr] = firing[k]
        slots = self.feeder_slot[t]
        share = excess / np.maximum(load, 1.0)
        end = (hours + 1).astype(np.float64) * HOUR_S
        k = t.size
        cond = Conditions(
            holds=np.where(firing, HOLDS, CLEAR).astype(np.int8),
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.where(firing, excess, 0.0),
            score=np.where(firing, np.clip(0.5 + share, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, share, 0.0),
            # The hour's closing reading is the first that showed it.
            onset=end,
            restart=restart,
        )
        self._pending.append(
            SlotConditions(slot=slots, conditions=cond, dt=np.full(k, HOUR_S), ts=end)
        )
        for i in range(k):
            self.figures[int(slots[i])] = {
                "feeder_w": round(float(feeder_w[i]), 1),
                "customers_w": round(float(customers_w[i]), 1),
                "expected_gap_w": round(float(expected[i]), 1),
                "unexplained_w": round(float(excess[i]), 1),
            }

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Hand over the verdicts of the hours judged since the last poll."""
        self._judge(ctx)
        if not self._pending:
            return None
        parts, self._pending = self._pending, []
        return SlotConditions.concat(parts)

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the hour's feeder power, customers' power and the losses expected."""
        return {"window_s": HOUR_S, **self.figures.get(slot, {})}

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the unexplained share."""
        return (
            f"check meter sees up to {facts.peak_magnitude:.0%} more than its customers plus "
            f"losses, for {format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )
