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
#: Weight of one clean hour in the pooled square of the spreads (about two days).
_POOL_RATE = 1.0 / 48.0
#: An hour this many spreads above the usual gap shows the change clearly.
_CLEAR_Z = 2.0


class EnergyBalanceConfig(DetectorConfig):
    """Options of the energy-balance detector."""

    raise_after_s: float = Field(
        default=0.0,
        ge=0,
        description="Extra persistence after the CUSUM passes its threshold (data time).",
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
        description="Until the gap is learned, unexplained energy is counted in spreads of "
        "this share of the feeder's energy.",
    )
    cusum_k: float = Field(
        default=0.5,
        ge=0,
        description="CUSUM reference: each hour's unexplained energy counts beyond this many "
        "of the gap's spreads (half the smallest shift to find quickly).",
    )
    cusum_h: float = Field(
        default=6.0,
        gt=0,
        description="CUSUM threshold, in spreads: the unexplained energy summed since it "
        "began must pass it (for normal noise, a false alarm every 2,600 hours or so).",
    )
    cusum_cap: float = Field(
        default=4.0, gt=0, description="One hour adds at most this many spreads to the sum."
    )
    min_excess_w: float = Field(
        default=300.0,
        ge=0,
        description="The unexplained power since the sum left zero must average this, W.",
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
        "and above the same hour the day before, while an alert is open, is a new incident "
        "(and a new alert).",
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
    hour of the day (an unmetered street light at night), with the spread around it. The
    unexplained energy, in spreads, feeds a one-sided CUSUM: a small persistent tap adds up
    until significant, an odd hour does not. Raised on the feeder meter.
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
        # Each transformer's unexplained power at each hour of the last day (and which hour
        # it was): a tap that follows its customer's load rises every evening, a new one
        # rises above the day before.
        self.day_excess = np.full((nt, 24), np.nan)
        self.day_hour = np.full((nt, 24), -1, dtype=np.int64)
        self.hours_since_start = np.zeros(nt, dtype=np.int64)
        self.firing = np.zeros(nt, dtype=np.bool_)
        # Per transformer: the CUSUM of unexplained energy in spreads, the hour it last left
        # zero, the unexplained energy since then, and the mean square of the unexplained
        # energy as a share of the load over clean hours.
        self.cusum = np.zeros(nt)
        self.seg_start = np.zeros(nt, dtype=np.int64)
        self.seg_sum = np.zeros(nt)
        self.seg_n = np.zeros(nt, dtype=np.int64)
        self.share_var = np.full(nt, config.gap_margin**2)
        self.seg_clear = np.zeros(nt, dtype=np.bool_)
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
        gross_w = bal.customers_gross_wh[usable]
        if t.size == 0:
            return
        order = np.argsort(hours, kind="stable")
        t, hours, feeder_w, customers_w, gross_w = (
            t[order],
            hours[order],
            feeder_w[order],
            customers_w[order],
            gross_w[order],
        )
        local_hour, day_type = ctx.calendar.hours(hours)
        load = np.abs(feeder_w)
        gap = feeder_w - customers_w
        k = t.size
        firing = np.zeros(k, dtype=np.bool_)
        restart = np.zeros(k, dtype=np.bool_)
        excess = np.zeros(k)
        onset = np.zeros(k)
        z_all = np.zeros(k)
        mean_excess = np.zeros(k)
        # One transformer hour at a time, in order: each hour's CUSUM and learning feed the
        # next hour's judgement.
        for i in range(k):
            one = slice(i, i + 1)
            expected, spread, learned = self.gap.expected(
                t[one], feeder_w[one], gross_w[one], day_type[one], local_hour[one]
            )
            tr = int(t[i])
            excess[i] = float(gap[i] - expected[0])
            share = excess[i] / max(float(load[i]), 1.0)
            if learned[0]:
                # The spread of one day type's hour is learned from a few days only: the
                # transformer's spread over all its hours, as a share of the load, is its floor.
                pooled = float(np.sqrt(self.share_var[tr])) * float(load[i])
                z = excess[i] / max(float(spread[0]), pooled)
            else:
                z = excess[i] / max(cfg.gap_margin * float(load[i]), cfg.min_excess_w)
            z_all[i] = z
            before = float(self.cusum[tr])
            s = max(0.0, before + min(z, cfg.cusum_cap) - cfg.cusum_k)
            # The change point: the first hour after the sum was last within one reference
            # of zero (not the last zero: a sum hovering just above it would point hours
            # before the change).
            if before <= cfg.cusum_k:
                self.seg_start[tr] = int(hours[i])
                self.seg_clear[tr] = False
            elif z >= _CLEAR_Z and not self.seg_clear[tr]:
                # A weak hour by chance may lead a strong change: its first clear hour is it.
                self.seg_start[tr] = int(hours[i])
            if z >= _CLEAR_Z:
                self.seg_clear[tr] = True
                self.seg_sum[tr] = 0.0
                self.seg_n[tr] = 0
            if s > 0.0:
                self.seg_sum[tr] += excess[i]
                self.seg_n[tr] += 1
            mean_excess[i] = self.seg_sum[tr] / max(int(self.seg_n[tr]), 1)
            over = s >= cfg.cusum_h and mean_excess[i] >= cfg.min_excess_w
            # Held while the evidence stands and this hour still shows unexplained energy;
            # an hour without any ends it, and the sum starts again from zero.
            firing[i] = over and z > cfg.cusum_k
            if over and not firing[i]:
                s = 0.0
            s = min(s, 2.0 * cfg.cusum_h)
            self.cusum[tr] = s
            # Hours not (yet) significant are the transformer's normal: learning only those
            # with no evidence at all would bias the gap and its spread low.
            normal = s < cfg.cusum_h
            if learned[0] and normal:
                bound = 9.0 * self.share_var[tr]  # one odd hour moves it by 3 spreads at most
                self.share_var[tr] += _POOL_RATE * (min(share * share, bound) - self.share_var[tr])
            if normal or not learned[0]:
                self.gap.learn(
                    t[one], feeder_w[one], gross_w[one], gap[one], day_type[one], local_hour[one]
                )
            # A new source of unmetered power on a transformer that already had one is a
            # new incident: a step above the lower of the two hours before, and above the
            # same hour the day before where it is known (a tap that follows its customer's
            # load steps up every morning or evening, and did so the day before).
            prior = np.fmin(self.previous[0, tr], self.previous[1, tr])
            hour = int(hours[i])
            cell = hour % 24
            if self.day_hour[tr, cell] == hour - 24:
                prior = max(prior, float(self.day_excess[tr, cell]))
            step = excess[i] - prior
            restart[i] = bool(
                firing[i]
                and self.firing[tr]
                and self.hours_since_start[tr] >= 2
                and step >= max(cfg.step_w, cfg.step_share * max(prior, 0.0))
            )
            self.day_excess[tr, cell] = excess[i]
            self.day_hour[tr, cell] = hour
            if restart[i]:
                self.seg_start[tr] = hour
            starting = firing[i] and (not self.firing[tr] or restart[i])
            self.hours_since_start[tr] = 0 if starting else self.hours_since_start[tr] + 1
            self.previous[1, tr] = self.previous[0, tr]
            self.previous[0, tr] = excess[i]
            self.firing[tr] = firing[i]
            onset[i] = (self.seg_start[tr] + 1) * HOUR_S
        slots = self.feeder_slot[t]
        shares = excess / np.maximum(load, 1.0)
        end = (hours + 1).astype(np.float64) * HOUR_S
        cond = Conditions(
            holds=np.where(firing, HOLDS, CLEAR).astype(np.int8),
            phase=np.zeros(k, dtype=np.int8),
            loss_w=np.where(firing, np.maximum(excess, 0.0), 0.0),
            score=np.where(firing, np.clip(0.5 + 10.0 * shares, 0.0, 0.95), 0.0),
            magnitude=np.where(firing, shares, 0.0),
            onset=np.where(firing, onset, np.nan),
            restart=restart,
        )
        self._pending.append(
            SlotConditions(slot=slots, conditions=cond, dt=np.full(k, HOUR_S), ts=end)
        )
        for i in range(k):
            self.figures[int(slots[i])] = {
                "feeder_w": round(float(feeder_w[i]), 1),
                "customers_w": round(float(customers_w[i]), 1),
                "unexplained_w": round(float(excess[i]), 1),
                "spreads": round(float(z_all[i]), 2),
                "cusum": round(float(self.cusum[int(t[i])]), 2),
                "mean_unexplained_w_since_change": round(float(mean_excess[i]), 1),
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
