"""Consumption drop: a sustained fall of a meter's energy against its own history.

Each meter's hourly energy (detectors/ledger.py) is compared with what its history expects
for that hour of that kind of day (weekday, Saturday, Sunday or public holiday). Every hour's
shortfall, as a share of the meter's usual hour and less its class's common change (weather,
an unlisted holiday), is added to a one-sided CUSUM in units of the meter's own day-to-day
spread, so a sustained fall accumulates hour by hour while a quiet afternoon does not; the
change point is where the sum last rose from near zero. A tap before the meter keeps the
shape of the load and lowers every hour alike; a shop closed, a plant shut down or a home on
holiday falls to a flat idle and is left alone.

Where the meter's transformer has a check meter, its balance decides: a tap shows there as
unexplained energy that matches the customer's fall and follows its load (raised with high
confidence, major, at a low threshold of the sum); a fall the balance does not see is honest.
What the other detectors' open alerts (a bypass, a lost phase) estimate their meters lost
is taken off the balance first: that energy is theirs.
Without a check meter (or when the balance is too noisy to tell), only a sum past a higher
threshold within two days of its change point is raised, and with low confidence, unless
the meter's own readings show the tap: its service cable dropping more volts per metered
ampere since the fall, by as much as the fall implies (detectors/cable.py; read against
its transformer phase's voltage where it can be, detectors/cable_evidence.py). The
balance is also read the other way round: unexplained energy that follows one customer's
metered load hour by hour, in proportion, is that customer's tap even where its own history
is too erratic to show a fall; among customers of one shape (shops open the same hours) it is
the one whose energy clearly fell, by as much as the balance misses. On a kind of day a meter
has not shown yet (its first Saturday, the first holiday) the same hour of another kind
stands in where the balance can confirm, so that a tap begun on a long weekend is not left
to the next working day.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from detectors.balance import GapModel
from detectors.base import (
    CLEAR,
    HOLDS,
    SEVERITY_LEVELS,
    UNKNOWN,
    Conditions,
    Detector,
    DetectorConfig,
    IncidentFacts,
    SlotConditions,
    format_duration,
    register,
)
from detectors.cable_evidence import CableEvidence
from detectors.context import BatchContext, FleetArrays, phase_block
from meterguard.calendar import DAY_TYPES, STAND_INS, DayType
from meterguard.model import (
    AlertKind,
    FloatArray,
    MeterEvent,
    MeterRegistry,
    ReadingBatch,
    Severity,
)

HOUR_S = 3600.0
#: Hours of history kept per meter and per transformer.
_RING = 72
#: Hours of a window whose lowest energy is compared with the lowest expected (base load).
_BASE_HOURS = 6
#: Falls of one class beginning within this many hours of each other are shared, not thefts.
_SHARED_HOURS = 12
#: Hours after a fall began within which the transformer's balance may confirm it.
_CONFIRM_HOURS = 36
#: Prior weight of the class spread, in hourly judgements (a day).
_PRIOR_WEIGHT = 24.0
_TAMPER = int(MeterEvent.COVER_OPEN | MeterEvent.TERMINAL_COVER_OPEN | MeterEvent.MAGNETIC_FIELD)
_MAJOR = SEVERITY_LEVELS.index(Severity.MAJOR)
#: The CUSUM counts as left zero above this (spreads x days): its change point.
_NEAR_ZERO = 0.5
#: Weight of an honest hour in the meter's mean clipped deviation (about 4 days).
_BIAS_RATE = 1.0 / 96.0
#: Hours a suspected fall may hold its hours back from the baseline.
_WEIGH_HOURS = 48
#: Hours of a transformer's unexplained energy matched against each customer's load.
_TRACE_HOURS = 12
#: How much wider an hour judged by another day type's baseline is (its first Saturday).
_STAND_IN_WIDENING = 2.0
#: A transformer's hour whose unexplained energy is this many spreads above its expected
#: gap stands out: it is not learned as the normal gap, and dates what a check meter saw.
_STANDS_OUT = 2.0
#: How much steeper a cable must have grown, alone, for its fall to be a tap (a fifth of
#: the load unmetered).
_CABLE_ALONE_RATIO = 1.25
#: The most unexplained energy that may confirm a fall, as a share of it (then it is more).
_MAX_SHARE = 3.0
#: Each meter's sum and spread, as kept at the start of each working day: a day found to
#: have been one of rest once it is over gives them back (`_forget_day`).
_DAY_STATE = ("cusum", "summed_spread", "bias", "low_since", "earlier_w", "var_sum", "var_n")
#: Hours before a fall in which the meter's own energy was within this share of its
#: expectation (it had not fallen yet) ...
_STEADY_SHARE = 0.2
#: ... the last this many of them tell what unexplained energy still ran when it began.
_STEADY_HOURS = 6
#: This detector's kind and the balance's: an alert of any other kind is a meter's own
#: reason for a fall.
_BALANCE_KINDS = (AlertKind.CONSUMPTION_DROP, AlertKind.ENERGY_BALANCE)
#: Kinds that tell of the installation, not of an episode: open for weeks, they say nothing
#: of whether an hour's consumption was the meter's normal.
_STANDING_KINDS = (AlertKind.CT_RATIO,)
BoolArray = npt.NDArray[np.bool_]
Int64Array = npt.NDArray[np.int64]


class ConsumptionDropConfig(DetectorConfig):
    """Options of the consumption-drop detector."""

    raise_after_s: float = Field(
        default=0.0, ge=0, description="Extra persistence; the hours judged are its own."
    )
    clear_after_s: float = Field(
        default=24 * HOUR_S,
        ge=0,
        description="Absence before clearing (data time): a day, so that one fall is one alert.",
    )
    update_every_s: float = Field(default=6 * HOUR_S, gt=0, description="Between updates, s.")
    severity: Severity = Field(
        default=Severity.MINOR, description="Severity without corroboration (with: major)."
    )
    drop_ratio: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="The last 24 hours' energy must be below this share of what the meter's "
        "history expects (after the class's common change).",
    )
    idle_ratio: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Below this share over the last 6 hours the load is idle (shutdown, "
        "holiday): not this detector.",
    )
    cusum_k: float = Field(
        default=0.5,
        ge=0,
        description="CUSUM reference: each day's fall counts beyond this many of the meter's "
        "own day-to-day spreads (half the smallest fall to find quickly).",
    )
    alone_h: float = Field(
        default=3.0,
        gt=0,
        description="Without corroboration, the CUSUM of the meter's hourly fall (in spreads "
        "x days) must reach this within 2 days of its change point (for normal day-to-day "
        "noise, a false alarm every 120 meter-days or so before the other checks) ...",
    )
    confirmed_h: float = Field(
        default=0.5,
        gt=0,
        description="... and with the check meter's balance (or a tamper event) confirming, this.",
    )
    confirm_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="The transformer's unexplained energy must reach this share of the "
        "meter's fall to confirm it (and stay below 3 times it).",
    )
    prior_spread: float = Field(
        default=0.2,
        gt=0,
        description="Day-to-day spread (natural log of the 24-h ratio) assumed before a "
        "meter's own is learned.",
    )
    min_spread: float = Field(
        default=0.06, gt=0, description="A meter's spread is never taken below this."
    )
    shape_correlation: float = Field(
        default=0.7,
        ge=-1,
        le=1,
        description="Correlation the last 24 hours must keep with the expected hourly shape "
        "(0.1 less when the balance confirms): a tap scales the load, an empty home changes it.",
    )
    min_loss_w: float = Field(
        default=100.0,
        ge=0,
        description="Without corroboration, a fall of less than this mean power over the "
        "last day, W, is not raised (not worth a crew's visit on the meter's history alone).",
    )
    min_baseline_w: float = Field(
        default=30.0, ge=0, description="Meters expected to draw less than this, W, are not judged."
    )
    learn_rate: float = Field(
        default=0.3, gt=0, le=1, description="Weight of a new day in the hour's baseline."
    )
    judge_delay_s: float = Field(
        default=HOUR_S + 300.0,
        ge=0,
        description="An hour is judged once every meter that closed the hour before has "
        "closed it too, and at the latest this long after it ends (a silent meter's hour).",
    )


@register
class ConsumptionDropDetector(Detector):
    """Flags a sustained proportional fall of a meter's energy against its own history."""

    name = "consumption_drop"
    kind = AlertKind.CONSUMPTION_DROP
    config_model = ConsumptionDropConfig
    needs = ("p1", "p2", "p3", "e_imp", "v1", "v2", "v3")
    requires = (("e_imp", "p1"),)

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        super().__init__(config, registry)
        assert isinstance(config, ConsumptionDropConfig)
        self.cfg = config
        n = len(registry)
        self._eligible = registry.flag_array(lambda m: m.role == "customer" and not m.generation)
        classes = [(m.customer_class or "").casefold() for m in registry]
        names = sorted(set(classes))
        self._class = np.array([names.index(c) for c in classes], dtype=np.int64)
        self._n_classes = len(names)
        fleet = FleetArrays.from_registry(registry)
        self._trafo = fleet.transformer.astype(np.int64)
        self._feeder = registry.flag_array(lambda m: m.role == "feeder")
        # Customers whose transformer has a check meter: its balance can confirm a fall.
        checked = np.unique(self._trafo[self._feeder & (self._trafo >= 0)])
        self._checked = np.isin(self._trafo, checked)
        self.base = np.full((n, DAY_TYPES, 24), np.nan)
        self.seen = np.zeros((n, DAY_TYPES, 24), dtype=np.int64)
        self.ring_e = np.full((n, _RING), np.nan)
        self.ring_b = np.full((n, _RING), np.nan)
        # Whether the hour's baseline was another day type's (the meter's first Saturday).
        self.ring_stand_in = np.zeros((n, _RING), dtype=np.bool_)
        self.ring_hour = np.full(n, -1, dtype=np.int64)
        #: Per meter and hour of the ring: the hour, where an alert of another kind (a bypass,
        #: demand above the contract) was open in it. Such an hour is not the meter's normal.
        self.ring_alerted = np.full((n, _RING), -1, dtype=np.int64)
        self.var_sum = np.zeros(n)
        self.var_n = np.zeros(n)
        self.low_since = np.full(n, -1, dtype=np.int64)
        # Hours are learned into the baseline a day late (see _release): the last one taken.
        self.learned_until = np.full(n, -1, dtype=np.int64)
        # The last judged fall in spreads (z), and the transformer's unexplained energy in
        # the day before each fall began (W; NaN: not known), kept from when it began.
        self.last_z = np.zeros(n)
        self.earlier_w = np.full(n, np.nan)
        self.run_alone = np.zeros(n, dtype=np.int64)
        self.run_confirmed = np.zeros(n, dtype=np.int64)
        # The CUSUM of each meter's hourly fall (spreads x days) and the spread it was last
        # counted in, and the mean of its clipped hourly deviation on honest hours
        # (clipping bursts biases it).
        self.cusum = np.zeros(n)
        self.summed_spread = np.ones(n)
        self.bias = np.zeros(n)
        self.held_hour = np.full(n, -1, dtype=np.int64)
        # Volts dropped per metered ampere, reading to reading, against the supply phase
        # where it can be: a tap before the meter steepens it (detectors/cable_evidence.py).
        self.cable = CableEvidence(registry, _RING)
        self.reversed_until = np.full(n, -np.inf)
        self.tamper_at = np.full(n, -np.inf)
        #: Data time at which each meter last had an alert of another kind open, and one of
        #: a kind that tells of energy it did not record (`Detector.unmetered`).
        self.other_alert_at = np.full(n, -np.inf)
        self.unmetered_at = np.full(n, -np.inf)
        nt = fleet.n_transformers
        self.gap = GapModel(nt, learn_days=7.0, allowance=0.06)
        self.u_wh = np.full((nt, _RING), np.nan)
        # The same against the loss allowance while the transformer's own gap is not yet
        # learned (its first days): all that can be said of a day before a fall then.
        self.u_allow = np.full((nt, _RING), np.nan)
        self.u_sd = np.full((nt, _RING), np.nan)
        self.u_hour = np.full((nt, _RING), -1, dtype=np.int64)
        # Per transformer and hour: the energy its customers' open alerts of other kinds (a
        # bypass, a lost phase) estimate lost, Wh, which explains that much of its gap.
        self.claimed_wh = np.zeros((nt, _RING))
        self.claimed_hour = np.full(_RING, -1, dtype=np.int64)
        #: Data time of the last poll: what the alerts lost since is added at the next.
        self.claims_until = -np.inf
        #: Per kind of alert telling of unrecorded energy: each meter's estimate at the last
        #: poll, kWh (NaN: none open).
        self.lost_seen: dict[AlertKind, FloatArray] = {}
        self.pending: dict[int, list[tuple[Int64Array, FloatArray, FloatArray]]] = defaultdict(list)
        self.judged_until = -1
        #: The latest hour each meter has closed: an hour is judged once all have.
        self.closed_through = np.full(n, -1, dtype=np.int64)
        self.verdicts: list[SlotConditions] = []
        self.figures: dict[int, dict[str, Any]] = {}
        #: Per working day begun (local date ordinal): `_DAY_STATE` before its first hour.
        self.day_start: dict[int, dict[str, npt.NDArray[Any]]] = {}
        self.judging_day = -1
        #: How many of the days the calendar found to be days of rest have been forgotten.
        self.found_taken = 0

    # ------------------------------------------------------------ intake

    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Take closed hours and balances; note reversed phases and tamper events."""
        self._intake(ctx)
        if len(batch):
            self.cable.add(batch)
            slot = batch.slot
            # Export at a customer without generation is the reversal detector's: its
            # energy says nothing about consumption for a day.
            exporting = (phase_block(batch, "p1") < -30.0).any(axis=0)
            hit = np.flatnonzero(exporting)
            if hit.size:
                np.maximum.at(self.reversed_until, slot[hit], batch.ts[hit] + 24 * HOUR_S)
            tampered = np.flatnonzero(batch.events.astype(np.int64) & _TAMPER)
            if tampered.size:
                np.maximum.at(self.tamper_at, slot[tampered], batch.ts[tampered])
        return Conditions.unknown(len(batch))

    def _intake(self, ctx: BatchContext) -> None:
        hours = ctx.hours
        if len(hours.hour):
            # An hour the ledger closed for a silent meter (no reading in it) is not closed
            # by that meter: it would hold every later hour back to the silence limit.
            read = hours.covered_s > 0
            np.maximum.at(self.closed_through, hours.slot[read], hours.hour[read])
            for hour in np.unique(hours.hour).tolist():
                if hour <= self.judged_until:
                    continue  # too late: that hour was judged without it
                pick = hours.hour == hour
                self.pending[hour].append(
                    (hours.slot[pick].astype(np.int64), hours.wh[pick], hours.covered_s[pick])
                )
        bal = ctx.balances
        ok = bal.complete
        if ok.any():
            t, hour = bal.transformer[ok], bal.hour[ok]
            load = bal.feeder_wh[ok]  # an hour's Wh is its mean power in W
            gap = load - bal.customers_wh[ok]
            gross = bal.customers_gross_wh[ok]
            local, day_type = ctx.calendar.hours(hour)
            for k in np.argsort(hour, kind="stable").tolist():
                one = slice(k, k + 1)
                expected, spread, learned = self.gap.expected(
                    t[one], load[one], gross[one], day_type[one], local[one]
                )
                unexplained = float(gap[k] - expected[0])
                cell = int(hour[k]) % _RING
                claimed = self.claimed_wh[t[k], cell] if self.claimed_hour[cell] == hour[k] else 0.0
                # Alerts' estimates explain at most the unexplained energy there is.
                claimed = min(claimed, max(unexplained, 0.0))
                self.u_hour[t[k], cell] = hour[k]
                self.u_wh[t[k], cell] = unexplained - claimed if learned[0] else np.nan
                self.u_allow[t[k], cell] = unexplained - claimed
                self.u_sd[t[k], cell] = spread[0]
                # Hours with unexplained energy are not the transformer's normal gap.
                if not learned[0] or unexplained < _STANDS_OUT * float(spread[0]):
                    self.gap.learn(
                        t[one], load[one], gross[one], gap[one], day_type[one], local[one]
                    )

    # ------------------------------------------------------------ judging

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Judge, in order, each hour all meters have closed or overdue; hand over the verdicts."""
        self._note_alerts(ctx)
        self._intake(ctx)
        found = ctx.calendar.found
        for day in found[self.found_taken :]:
            self._forget_day(day.toordinal(), ctx)
        self.found_taken = len(found)
        for hour in sorted(self.pending):
            latest = (hour + 1) * HOUR_S + self.cfg.judge_delay_s
            if latest <= ctx.now:
                at = latest
            elif self._closed_by_all(hour):
                at = ctx.now
            else:
                break  # later hours wait for this one: each meter's hours go in order
            self._judge(hour, self.pending.pop(hour), at, ctx)
            self.judged_until = max(self.judged_until, hour)
        if not self.verdicts:
            return None
        parts, self.verdicts = self.verdicts, []
        return SlotConditions.concat(parts)

    def _note_alerts(self, ctx: BatchContext) -> None:
        """Note which meters have other kinds' alerts open, and the energy those explain.

        Polls come at every tick of data time: since the last one, each transformer's
        customers with an alert of a kind that tells of unrecorded energy (a bypass, a lost
        phase) lost what their alerts' estimates grew by, the largest of a meter's alerts
        (a tamper and the imbalance it causes tell of one loss).
        """
        alerts = ctx.alerts
        n = len(self._eligible)
        others = [kind for kind in alerts.raised if kind not in _BALANCE_KINDS]
        episodes = alerts.open_any([k for k in others if k not in _STANDING_KINDS], n)
        standing = alerts.open_any([k for k in others if k in _STANDING_KINDS], n)
        self.other_alert_at[episodes | standing] = ctx.now
        hour_now = int(ctx.now // HOUR_S)
        self.ring_alerted[episodes, hour_now % _RING] = hour_now
        lost = np.zeros(n)
        for kind in alerts.unmetered:
            self.unmetered_at[alerts.raised[kind]] = ctx.now
            now = alerts.lost_kwh(kind)
            before = self.lost_seen.get(kind)
            if before is not None:
                grew = np.isfinite(now) & np.isfinite(before) & (now > before)
                lost = np.maximum(lost, np.where(grew, now - before, 0.0))
            self.lost_seen[kind] = now
        since, self.claims_until = self.claims_until, ctx.now
        on = (lost > 0) & (self._trafo >= 0) & ~self._feeder
        if not on.any() or not since < ctx.now:
            return
        per_transformer = np.bincount(
            self._trafo[on], weights=1000.0 * lost[on], minlength=self.claimed_wh.shape[0]
        )
        # What was lost since the last poll, spread evenly over the hours it spans.
        begin = max(since, ctx.now - _RING * HOUR_S)
        span = ctx.now - begin
        while begin < ctx.now:
            hour = int(begin // HOUR_S)
            end = min(ctx.now, (hour + 1) * HOUR_S)
            cell = hour % _RING
            if self.claimed_hour[cell] != hour:
                self.claimed_hour[cell] = hour
                self.claimed_wh[:, cell] = 0.0
            self.claimed_wh[:, cell] += per_transformer * (end - begin) / span
            begin = end

    def _closed_by_all(self, hour: int) -> bool:
        """Whether every meter that closed the hour before has closed this hour too.

        Polls come at ticks of data time, so this is known at the same tick whatever the
        batches were. A meter read hourly at half past closes an hour only half an hour
        after its end; a meter silent since before the hour does not hold it back.
        """
        reporting = self.closed_through >= hour - 1
        return bool((self.closed_through[reporting] >= hour).all())

    def _judge(
        self,
        hour: int,
        parts: list[tuple[Int64Array, FloatArray, FloatArray]],
        at: float,
        ctx: BatchContext,
    ) -> None:
        n = len(self._eligible)
        wh = np.full(n, np.nan)
        covered = np.zeros(n)
        for slots, energy, seconds in parts:
            wh[slots] = np.where(np.isnan(wh[slots]), 0.0, wh[slots]) + energy
            covered[slots] += seconds
        one_hour = np.array([hour], dtype=np.int64)
        local, day_type = ctx.calendar.hours(one_hour)
        k, d = int(local[0]), int(day_type[0])
        self._begin_day(int(ctx.calendar.local_days(one_hour)[0]), d)
        # Meters read in this hour, with a usable hour of consumption.
        meters = np.flatnonzero(np.isfinite(wh) & self._eligible).astype(np.int64)
        valid = (covered[meters] >= 0.8 * HOUR_S) & (wh[meters] >= 0.0)
        valid &= self.reversed_until[meters] <= hour * HOUR_S
        self._release(meters, hour, ctx)
        expected, stand_in = self._expected(meters, d, k)
        cell = hour % _RING
        # The ring: hours not written since are unknown.
        stale = self.ring_hour[meters] < hour - _RING
        self.ring_e[meters[stale]] = np.nan
        self.ring_b[meters[stale]] = np.nan
        gap_hours = np.flatnonzero(~stale & (self.ring_hour[meters] < hour - 1))
        for m in gap_hours.tolist():
            missed = np.arange(self.ring_hour[meters[m]] + 1, hour) % _RING
            self.ring_e[meters[m], missed] = np.nan
            self.ring_b[meters[m], missed] = np.nan
        self.ring_e[meters, cell] = np.where(valid, wh[meters], np.nan)
        self.ring_b[meters, cell] = np.where(valid, expected, np.nan)
        self.ring_stand_in[meters, cell] = stand_in
        self.ring_hour[meters] = hour
        self.cable.advance(meters, hour)
        self._window(meters, hour, at, ctx)

    def _begin_day(self, day: int, day_type: int) -> None:
        """Keep each meter's sum and spread as a working day begins (see `_forget_day`)."""
        if day == self.judging_day:
            return
        self.judging_day = day
        for old in [d for d in self.day_start if d < day - 2]:
            del self.day_start[old]
        if day_type == DayType.WEEKDAY:
            self.day_start[day] = {name: getattr(self, name).copy() for name in _DAY_STATE}

    def _forget_day(self, day: int, ctx: BatchContext) -> None:
        """Undo what a working day found to have been one of rest did to each meter's sum.

        Its hours were judged against working days: a shop closed for a holiday the
        calendar lacks fell on every one of them, and its sum and change point would date a
        tap begun later from that day. Each meter whose fall is not being raised gets back
        its sum and spread of the day's start, and the day's hours, in the windows still to
        come, are read against the expectation of a day of rest (unknown where the meter
        has not shown one and no check meter can confirm).
        """
        saved = self.day_start.pop(day, None)
        if saved is None:
            return
        keep = self.run_alone + self.run_confirmed > 0
        for name, before in saved.items():
            now = getattr(self, name)
            now[~keep] = before[~keep]
        meters = np.flatnonzero(self._eligible).astype(np.int64)
        written = self.ring_hour[meters]
        ring = np.arange(self.judged_until - _RING + 1, self.judged_until + 1, dtype=np.int64)
        hours = ring[ctx.calendar.local_days(ring) == day]
        local, day_type = ctx.calendar.hours(hours)
        for h, k, d in zip(hours.tolist(), local.tolist(), day_type.tolist(), strict=True):
            held = meters[(written >= h) & (written - h < _RING)]
            cell = h % _RING
            expected, stand_in = self._expected(held, d, k)
            # A usable hour kept its energy in the ring (see _judge).
            usable = np.isfinite(self.ring_e[held, cell])
            self.ring_b[held, cell] = np.where(usable, expected, np.nan)
            self.ring_stand_in[held, cell] = stand_in

    def _expected(
        self, meters: Int64Array, day_type: int, hour: int
    ) -> tuple[FloatArray, BoolArray]:
        """Return each meter's expected energy for this hour, and if another day type's stands in.

        An hour of a kind of day the meter has not shown yet (its first Saturday, the first
        holiday) is judged, where its transformer has a check meter, by the same hour of the
        nearest kind it has shown on two days at least: the class's common change takes out
        what such a day does to everyone, the hour counts with a wider spread (a household's
        weekend differs from its weekday in its own way), and only the balance may confirm
        a fall on such a day. Without a check meter the hour is not judged: alone, a shop's
        first Sunday is not its Monday.
        """
        expected = self.base[meters, day_type, hour]
        stand_in = np.zeros(meters.size, dtype=np.bool_)
        for other in STAND_INS[day_type][1:]:
            missing = ~np.isfinite(expected)
            if not missing.any():
                break
            # A stand-in of one day is one day's noise: two at least.
            usable = missing & (self.seen[meters, other, hour] >= 2) & self._checked[meters]
            expected = np.where(usable, self.base[meters, other, hour], expected)
            stand_in |= missing & np.isfinite(expected)
        return expected, stand_in

    def _widened(
        self, spread: FloatArray, y: FloatArray, stand_in: BoolArray, cls: Int64Array
    ) -> FloatArray:
        """Return the spread each meter's hour is judged by: wider where another day stands in.

        How far a household's first Saturday departs from its weekdays is its own: the
        spread is at least the class's dispersion of that departure at this hour (its
        members judged by a stand-in too), and twice the meter's own.
        """
        widened = np.where(stand_in, spread * _STAND_IN_WIDENING, spread)
        for c in np.unique(cls[stand_in]).tolist():
            peers = stand_in & (cls == c) & np.isfinite(y)
            if peers.sum() >= 5:
                dispersion = 1.4826 * float(np.median(np.abs(y[peers] - np.median(y[peers]))))
                mine = stand_in & (cls == c)
                widened[mine] = np.maximum(widened[mine], dispersion)
        return widened

    def _release(self, meters: Int64Array, hour: int, ctx: BatchContext) -> None:
        """Learn into the baseline each meter's hours that are a day old and above suspicion.

        An hour is learned only once the 24-hour windows after it have been judged: a tap's
        first hours lower the window too little to be suspect at once, and a baseline that
        adopted them would hide the tap from then on. While a meter's consumption is low
        its hours wait; if the fall is raised they are dropped, if it passes they are learned.
        """
        cfg = self.cfg
        oldest = hour - _RING + 1
        raised = self.run_alone[meters] + self.run_confirmed[meters] > 0
        # A fall being raised: the hours it covers must never become the meter's normal.
        self.learned_until[meters[raised]] = hour - 1
        # A fall being weighed holds its hours back, for 2 days at most: by then it is
        # raised or it is the meter's new normal.
        weighing = (self.cusum[meters] >= 0.5 * cfg.alone_h) & (
            hour - self.low_since[meters] < _WEIGH_HOURS
        )
        ready = meters[~raised & ~weighing]
        if not ready.size:
            return
        first = np.maximum(self.learned_until[ready] + 1, oldest)
        last = hour - 24
        self.learned_until[ready] = np.maximum(self.learned_until[ready], last)
        for h in range(int(first.min(initial=last + 1)), last + 1):
            take = ready[first <= h]
            cell = h % _RING
            written = self.ring_hour[take]
            # The cell holds hour h if the meter was read since and the ring has not come round.
            held = (written >= h) & (written - h < _RING)
            take = take[held & np.isfinite(self.ring_e[take, cell])]
            # An hour with an alert of another kind open is not the meter's normal: demand
            # above its contract would raise its baseline, a bypass lower it.
            take = take[self.ring_alerted[take, cell] != h]
            if not take.size:
                continue
            local, day_type = ctx.calendar.hours(np.array([h], dtype=np.int64))
            k, d = int(local[0]), int(day_type[0])
            value = self.ring_e[take, cell]
            old = self.base[take, d, k]
            rate = np.maximum(cfg.learn_rate, 1.0 / (self.seen[take, d, k] + 1.0))
            self.base[take, d, k] = np.where(np.isfinite(old), old + rate * (value - old), value)
            self.seen[take, d, k] += 1
            self.cable.learn(take, h)

    def _window(self, meters: Int64Array, hour: int, at: float, ctx: BatchContext) -> None:
        """Judge the last 24 hours of each meter read this hour; emit hourly verdicts."""
        cfg = self.cfg
        order = (hour - np.arange(24)) % _RING
        e = self.ring_e[meters][:, order]
        b = self.ring_b[meters][:, order]
        ok = np.isfinite(e) & np.isfinite(b)
        count = ok.sum(axis=1)
        e_sum = np.where(ok, e, 0.0).sum(axis=1)
        b_sum = np.where(ok, b, 0.0).sum(axis=1)
        judged = (count >= 18) & (b_sum >= cfg.min_baseline_w * np.maximum(count, 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(judged, e_sum / np.maximum(b_sum, 1e-9), np.nan)
            x = np.log(np.maximum(ratio, 1e-3))
            recent = ok[:, :6]
            recent_ratio = np.where(recent, e[:, :6], 0.0).sum(axis=1) / np.maximum(
                np.where(recent, b[:, :6], 0.0).sum(axis=1), 1e-9
            )
            # Base load: a tap lowers the quietest hours too; a closed shop does not.
            low_e = np.sort(np.where(ok, e, np.inf), axis=1)[:, :_BASE_HOURS].mean(axis=1)
            low_b = np.sort(np.where(ok, b, np.inf), axis=1)[:, :_BASE_HOURS].mean(axis=1)
            base_fall = np.log(np.maximum(low_e, 1e-3) / np.maximum(low_b, 1e-3))
            # The daily shape over the last 12 hours: a proportional fall keeps the
            # baseline's hour-to-hour variation; a closed shop or an empty home is flat.
            cv_e = _variation(e[:, :12], ok[:, :12])
            cv_b = _variation(b[:, :12], ok[:, :12])
        # The change common to the meter's class (weather, an unlisted holiday).
        common = np.zeros(meters.size)
        cls = self._class[meters]
        for c in np.unique(cls).tolist():
            peers = (cls == c) & np.isfinite(x)
            if peers.sum() >= 5:
                common[cls == c] = np.median(x[peers])
        y = x - common
        spread = self._spread(meters)
        low = np.isfinite(y) & (y < np.log(cfg.drop_ratio))
        exporting = self.reversed_until[meters] > hour * HOUR_S - 24 * HOUR_S
        # This hour's deviation from what the meter's history expects of it, as a share of
        # the meter's usual hour, clipped (one burst must not wipe out a day's evidence),
        # less the class's change this hour and the meter's own mean of the clipped figure.
        now_ok = ok[:, 0] & judged & ~exporting
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = b_sum / np.maximum(count, 1)
            u = np.clip((e[:, 0] - b[:, 0]) / np.maximum(mean_b, 1e-9), -1.0, 1.0)
        u = np.where(now_ok, u, np.nan)
        u_common = np.zeros(meters.size)
        for c in np.unique(cls).tolist():
            peers = (cls == c) & now_ok
            if peers.sum() >= 5:
                u_common[cls == c] = np.median(u[peers])
        dev = u - u_common - self.bias[meters]
        # One-sided CUSUM in units of the meter's day-to-day spread: a day whose energy is
        # a share f below its expectation adds f / spread - k; each hour adds its 24th.
        # The sum so far re-read with the meter's spread as now known: the hours already
        # summed were judged with a yardstick that was mostly the prior on its first days.
        before = self.cusum[meters] * self.summed_spread[meters] / spread
        self.summed_spread[meters] = spread
        widened = self._widened(spread, y, self.ring_stand_in[meters, hour % _RING], cls)
        step = np.where(now_ok, (-dev / widened - cfg.cusum_k) / 24.0, 0.0)
        after = np.clip(before + step, 0.0, 2.0 * cfg.alone_h)
        # Consumption back at its usual over the last 6 hours ends the evidence.
        after = np.where(np.isfinite(recent_ratio) & (recent_ratio >= 1.0), 0.0, after)
        self.cusum[meters] = after
        # Hours judged by another day type's baseline say nothing of the meter's own habits.
        borrowed = (ok & self.ring_stand_in[meters][:, order]).any(axis=1)
        honest = now_ok & (after <= _NEAR_ZERO) & ~borrowed
        self.bias[meters[honest]] += _BIAS_RATE * (u - u_common - self.bias[meters])[honest]
        # The change point: the first hour after the sum was last near zero.
        starting = (after > _NEAR_ZERO) & (self.low_since[meters] < 0)
        self.low_since[meters[starting]] = hour
        self._note_earlier(meters[starting], hour)
        self.low_since[meters[after <= _NEAR_ZERO]] = -1
        # The spread is the meter's honest variation: a fall being weighed (the sum away
        # from zero) must not widen the yardstick it is judged by.
        weighed = (self.low_since[meters] >= 0) & (y < 0)
        learn = np.isfinite(y) & (np.abs(y) < 3.0 * spread) & ~weighed & ~borrowed
        self.var_sum[meters[learn]] += y[learn] ** 2
        self.var_n[meters[learn]] += 1.0
        # Idle: the last hours nearly empty, or flat where the usual day is not (a tap
        # keeps the day's shape, an empty home or a closed shop loses it).
        flat = (cv_b > 0.2) & (cv_e < 0.4 * cv_b)
        idle = (recent_ratio < 0.5 * cfg.idle_ratio) | (flat & (recent_ratio < 2 * cfg.idle_ratio))
        # The shape since the change point: the step itself does not count against it.
        in_run = ok & (np.arange(24)[None, :] <= (hour - self.low_since[meters])[:, None])
        run_shape = _correlation(e, b, in_run)
        with np.errstate(invalid="ignore", divide="ignore"):
            run_ratio = _ratio_within(e, b, in_run)
        proportional = base_fall < 0.5 * y
        # The fall goes on: the last hours are low too (a closure that ended is not a tap).
        # ... and since the change point: the balance may confirm a fall the day's window does
        # not show yet; alone, the day must show it too.
        plausible = (run_ratio < cfg.drop_ratio) & ~idle & ~exporting
        plausible &= (recent_ratio < cfg.drop_ratio) & (self.low_since[meters] >= 0)
        deficit = np.where(judged, (b_sum - e_sum) / np.maximum(count, 1), 0.0)
        alone = plausible & low & proportional & (run_shape >= cfg.shape_correlation)
        alone &= after >= cfg.alone_h
        # A day judged by another day type's hours is for the check meter to confirm: alone,
        # a household's first holiday differs from its weekdays too much to tell a tap.
        alone &= ~borrowed
        # A fall that took longer than that to pass the threshold is a drift of the meter's
        # normal (a season, heating switched off for the summer), not a tap: a tap is a step.
        alone &= hour - self.low_since[meters] < _WEIGH_HOURS
        alone &= deficit >= cfg.min_loss_w
        # Falls that could be taps claim the transformer's unexplained energy, deepest first;
        # not a meter whose own alert (a bypass) has told of its loss since the day before
        # its fall: that energy is off the balance already (`_note_alerts`).
        since = self.low_since[meters]
        own_alert = self.unmetered_at[meters] >= (since - 24) * HOUR_S
        claims = plausible & ~(run_shape < cfg.shape_correlation - 0.1) & ~own_alert
        support, whole, informative, correlation, stood_out = self._balance(meters, hour, claims)
        confirmed_now = informative & (support >= cfg.confirm_share) & (support <= _MAX_SHARE)
        confirmed_now &= ~own_alert
        confirmed_now &= correlation >= 0.3
        # Only a young fall can be matched to the balance: later, unexplained energy that
        # appears may be anyone's on the transformer.
        confirmed_now &= hour - self.low_since[meters] <= _CONFIRM_HOURS
        # A cover opened or a magnet applied in the day before the fall began.
        tamper_at = self.tamper_at[meters]
        tampered = (
            (since >= 0) & (tamper_at >= (since - 24) * HOUR_S) & (tamper_at <= since * HOUR_S)
        )
        # ... and not one an earlier alert of the meter, now cleared, already followed: a fall
        # after it is a new one (the load back at a lower normal), told by new evidence.
        last = self.held_hour[meters]
        cleared = (last >= 0) & ((hour - last) * HOUR_S > cfg.clear_after_s)
        tampered &= ~cleared | (tamper_at > last * HOUR_S)
        steeper, cable_ratio = self._steeper_cable(meters, hour, run_ratio)
        confirmed = plausible & (after >= cfg.confirmed_h) & (confirmed_now | tampered | steeper)
        confirmed &= ~(run_shape < cfg.shape_correlation - 0.1)
        # A tap begins when the balance's unexplained energy does: a quiet morning before
        # it, which started the sum early, is not pointed at.
        by_balance = confirmed & confirmed_now
        self.low_since[meters[by_balance]] = stood_out[by_balance]
        # A clear fall, still going on: enough to tell a tap among customers of one shape.
        clear = (y <= -3.0 * spread) & (recent_ratio < cfg.drop_ratio) & ~idle
        # The other way round: the transformer's unexplained energy follows this meter's
        # load hour by hour, in proportion, while its energy is below what it expects.
        traced, traced_from = self._traced(meters, hour, y / spread, clear)
        traced &= np.isfinite(y) & (y < 0) & ~exporting & ~borrowed
        fresh = traced & (self.low_since[meters] < 0)
        self.low_since[meters[fresh]] = traced_from[fresh]
        confirmed |= traced
        # The meter's own cable: steepened since its sum left zero, while its energy fell
        # over the same hours.
        cable_led, led_ratio = self._cable_led(meters, hour, e, b, ok)
        cable_led &= np.isfinite(y) & ~exporting & ~idle
        fresh = cable_led & (self.low_since[meters] < 0)
        self.low_since[meters[fresh]] = self.cable.since(meters[fresh])
        cable_ratio = np.where(np.isfinite(cable_ratio), cable_ratio, led_ratio)
        confirmed |= cable_led
        # ... and it begins when the cable steepened, where that came later.
        by_cable = confirmed & (steeper | cable_led)
        cable_since = self.cable.since(meters)
        later = by_cable & (cable_since > self.low_since[meters])
        self.low_since[meters[later]] = cable_since[later]
        refuted = informative & (whole < 0.1)
        self.last_z[meters] = np.where(np.isfinite(y), y / spread, 0.0)
        # Falls that others of the class began with (a warm spell switching electric
        # heating off) are not one customer's doing, whatever the balance says.
        shared = self._shared(meters, alone | confirmed)
        alone &= ~refuted & ~shared
        # ... except where the meter's own cable says so: no common cause steepens it.
        confirmed &= ~shared | steeper | cable_led
        self.run_alone[meters] = np.where(alone, self.run_alone[meters] + 1, 0)
        self.run_confirmed[meters] = np.where(confirmed, self.run_confirmed[meters] + 1, 0)
        holds = alone | confirmed
        # A fall held again after its alert cleared is a new alert: it starts after the
        # last hour the old one held (one start, one alert).
        renewed = holds & cleared
        self.low_since[meters[renewed]] = np.maximum(since[renewed], last[renewed] + 1)
        since = self.low_since[meters]
        self.held_hour[meters[holds]] = hour
        strong = confirmed
        # The alert starts at the change point: the end of the first hour the sum counted
        # (never before the change, so the crew is not pointed at an honest hour).
        onset = (since + 1).astype(np.float64) * HOUR_S
        verdict = np.where(holds, HOLDS, np.where(np.isfinite(y), CLEAR, UNKNOWN)).astype(np.int8)
        told = verdict != UNKNOWN
        if not told.any():
            return
        # How deep the fall is: since its change point, less the class's change (the last
        # day's window dilutes a young fall with the honest hours before it).
        with np.errstate(invalid="ignore", divide="ignore"):
            depth = np.log(np.maximum(run_ratio, 1e-3)) - common
        share = np.clip(1.0 - np.exp(np.where(np.isfinite(depth), depth, y)), 0.0, 1.0)
        pick = np.flatnonzero(told)
        k = pick.size
        self.verdicts.append(
            SlotConditions(
                slot=meters[pick].astype(np.int32),
                conditions=Conditions(
                    holds=verdict[pick],
                    phase=np.zeros(k, dtype=np.int8),
                    loss_w=np.where(holds[pick], np.maximum(deficit[pick], 0.0), 0.0),
                    score=np.where(
                        holds[pick],
                        np.where(strong[pick], 0.9, np.clip(0.3 + share[pick] / 2, 0, 0.6)),
                        0.0,
                    ),
                    magnitude=np.where(holds[pick], share[pick], 0.0),
                    onset=onset[pick],
                    severity=np.where(strong[pick], _MAJOR, 0).astype(np.int8),
                ),
                dt=np.full(k, HOUR_S),
                ts=np.full(k, at),
            )
        )
        supply_phase = self.cable.supply.phase_of(meters)
        against_phase = self.cable.by_reference(meters)
        for j in np.flatnonzero(holds).tolist():
            self.figures[int(meters[j])] = {
                "ratio_24h": round(float(ratio[j]), 3),
                "ratio_after_class_change": round(float(np.exp(y[j])), 3),
                "own_spread": round(float(spread[j]), 3),
                "sigmas": round(float(y[j] / spread[j]), 1),
                "cusum": round(float(after[j]), 2),
                "hours_since_change": int(hour - since[j]),
                "hourly_wh": [round(float(v), 1) for v in np.nan_to_num(e[j, ::-1])],
                "expected_wh": [round(float(v), 1) for v in np.nan_to_num(b[j, ::-1])],
                "transformer_confirms": bool(confirmed_now[j]),
                "unexplained_share_of_fall": None
                if not np.isfinite(support[j])
                else round(float(support[j]), 2),
                "tamper_event": bool(tampered[j]),
                "cable_drop_per_ampere_ratio": None
                if not np.isfinite(cable_ratio[j])
                else round(float(cable_ratio[j]), 2),
                "cable_read_against_phase": bool(against_phase[j]),
                "supply_phase": None if supply_phase[j] < 0 else f"L{supply_phase[j] + 1}",
                "transformer_traces_its_load": bool(traced[j]),
            }

    def _steeper_cable(
        self, meters: Int64Array, hour: int, run_ratio: FloatArray
    ) -> tuple[BoolArray, FloatArray]:
        """Return whether each fall's cable drops more volts per metered ampere, and how much more.

        Since the change point (24 hours at most) against the meter's learned hours: a tap
        leaving a share of the load metered steepens the slope by the inverse of that share.
        It counts when the steepening is sure (detectors/cable.py) and as large as the fall
        implies: half of it at least, and not far more (a slope grown tenfold is the
        supply's doing, not a share of the load).
        """
        steeper = np.zeros(meters.size, dtype=np.bool_)
        ratio = np.full(meters.size, np.nan)
        since = self.low_since[meters]
        falling = np.flatnonzero(since >= 0)
        if not falling.size:
            return steeper, ratio
        first = np.maximum(since[falling], hour - 23)
        ratio[falling], sure = self.cable.steepening(meters[falling], first, hour)
        with np.errstate(invalid="ignore", divide="ignore"):
            implied = 1.0 / np.maximum(run_ratio[falling], 0.05)
            enough = ratio[falling] >= 1.0 + 0.5 * (implied - 1.0)
            enough &= ratio[falling] <= 1.5 * implied
        steeper[falling] = sure & enough
        return steeper, ratio

    def _cable_led(
        self, meters: Int64Array, hour: int, e: FloatArray, b: FloatArray, ok: BoolArray
    ) -> tuple[BoolArray, FloatArray]:
        """Return whether each meter's cable steepened on its own, and by how much.

        The cable's sum past its threshold, and since it left zero (48 hours at most) the
        slope surely steeper, by a fifth at least, while the energy of those hours (24 at
        most; `e` and `b` are the window's hours back from this one) against the baseline
        shows at least half the fall the cable implies, in log terms: a tap on a household
        too erratic for its energy's own sum to tell. (A meter whose energy is as usual
        while its cable says half is unmetered would have doubled its consumption the same
        hour.)
        """
        led = np.zeros(meters.size, dtype=np.bool_)
        ratio = np.full(meters.size, np.nan)
        rising = np.flatnonzero(self.cable.steepened(meters))
        if not rising.size:
            return led, ratio
        since = self.cable.since(meters[rising])
        first = np.maximum(since, hour - 47)
        ratio[rising], sure = self.cable.steepening(meters[rising], first, hour)
        within = ok[rising] & (np.arange(24)[None, :] <= (hour - since)[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            metered = _ratio_within(e[rising], b[rising], within)
            shown = np.log(metered) <= -0.5 * np.log(ratio[rising])
        steep = sure & (ratio[rising] >= _CABLE_ALONE_RATIO)
        led[rising] = steep & shown & (within.sum(axis=1) >= 3)
        return led, ratio

    def _shared(self, meters: Int64Array, candidates: BoolArray) -> BoolArray:
        """Return, for the candidates, whether others of their class began falling with them.

        A tap is one customer's doing; several customers of a class whose consumption began
        to fall within the same half day are following something they share (a warm spell
        switching electric heating off, a local event) that the class median does not show.
        """
        shared = np.zeros(meters.size, dtype=np.bool_)
        if not candidates.any():
            return shared
        falling = np.flatnonzero(self.low_since >= 0)
        for j in np.flatnonzero(candidates).tolist():
            since = self.low_since[meters[j]]
            peers = falling[self._class[falling] == self._class[meters[j]]]
            # A peer with an alert of another kind in the day before its fall or since (a
            # phase bypassed or shifted, demand above its contract) fell for its own reason.
            own_reason = self.other_alert_at[peers] >= (self.low_since[peers] - 24) * HOUR_S
            peers = peers[~own_reason | (peers == meters[j])]
            # Only falls of a like depth are shared: at any hour some households of a large
            # class are a little below their usual, and a deep fall is not one of theirs.
            peers = peers[self.last_z[peers] <= 0.5 * self.last_z[meters[j]]]
            together = np.abs(self.low_since[peers] - since) <= _SHARED_HOURS
            class_size = int((self._class == self._class[meters[j]]).sum())
            shared[j] = int(together.sum()) - 1 >= max(2, round(0.03 * class_size))
        return shared

    def _note_earlier(self, meters: Int64Array, since: int) -> None:
        """Keep, for falls beginning now, the transformer's unexplained power the day before.

        The window lags a fall by up to a day, so the day before that is the last known to be
        free of it; kept now, because the ring forgets it while the fall goes on.
        """
        before = np.arange(since - 48, since - 24)
        for m in meters.tolist():
            t = int(self._trafo[m])
            if t < 0:
                continue
            earlier = self._at_hours(self.u_wh, t, before)
            known = np.isfinite(earlier)
            if known.sum() < 6:
                # The transformer's gap not learned yet: the day is judged by its gap above
                # the loss allowance, which stands for the expected gap until then.
                earlier = self._at_hours(self.u_allow, t, before)
                known = np.isfinite(earlier)
            self.earlier_w[m] = float(earlier[known].mean()) if known.sum() >= 6 else np.nan
            # The day just before the change point may hold the fall's first hours; if it
            # held unexplained energy while the meter's own energy had not fallen, that
            # energy came before the fall and belongs to something else on the transformer.
            day = np.arange(since - 24, since)
            cells = day % _RING
            u_day = self._at_hours(self.u_wh, t, day)
            own = (self.ring_hour[m] >= day) & (self.ring_hour[m] - day < _RING)
            expected = np.where(own, self.ring_b[m, cells], np.nan)
            deficit = expected - self.ring_e[m, cells]
            both = np.isfinite(u_day) & np.isfinite(deficit)
            if both.sum() >= 6:
                came_first = float(u_day[both].mean())
                if came_first > 0 and float(deficit[both].mean()) < 0.3 * came_first:
                    # Only what still ran when the meter's own energy began to fall: a
                    # load that came for some hours of that day and went is over.
                    steady = np.flatnonzero(both & (deficit < _STEADY_SHARE * expected))
                    if steady.size >= 3:
                        last = steady[-_STEADY_HOURS:]
                        came_first = min(came_first, float(u_day[last].mean()))
                    self.earlier_w[m] = np.fmax(self.earlier_w[m], came_first)

    def _at_hours(self, table: FloatArray, t: int, hours: Int64Array) -> FloatArray:
        """Return transformer `t`'s figures of `table` at `hours`; NaN where the ring moved on."""
        cells = hours % _RING
        figures: FloatArray = np.where(self.u_hour[t, cells] == hours, table[t, cells], np.nan)
        return figures

    def _spread(self, meters: Int64Array) -> FloatArray:
        """Return each meter's day-to-day spread of the log ratio.

        Its own, shrunk towards its class's: the median of the class's meters that have a
        day of their own (the configured prior before any has).
        """
        cfg = self.cfg
        prior = np.full(meters.size, cfg.prior_spread**2)
        cls = self._class[meters]
        own = self.var_n[meters] >= 24
        mine = np.where(own, self.var_sum[meters] / np.maximum(self.var_n[meters], 1), np.nan)
        for c in np.unique(cls).tolist():
            peers = (cls == c) & own
            if peers.sum() >= 5:
                prior[cls == c] = np.median(mine[peers])
        var = (prior * _PRIOR_WEIGHT + self.var_sum[meters]) / (_PRIOR_WEIGHT + self.var_n[meters])
        spread: FloatArray = np.maximum(np.sqrt(var), cfg.min_spread)
        return spread

    def _balance(
        self, meters: Int64Array, hour: int, claims: BoolArray
    ) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray, Int64Array]:
        """Return what the transformer's balance says of each meter's fall.

        Per meter: the unexplained energy as a share of the meter's fall since it began
        (at most 12 hours), once to confirm and once to refute; whether the balance is
        precise enough to tell; and how the unexplained energy follows the meter's metered
        energy (correlation); and the hour from which it is judged, when the unexplained
        energy stood out after the change point (the sum may leave zero on a quiet morning
        before the tap), else the change point. To confirm, the falls on one transformer
        that could be taps (`claims`) share its unexplained energy, the deepest taking its
        part first, so that one tap does not confirm a neighbour's quiet day as well; to
        refute, each fall has it all.
        """
        m = meters.size
        stood_out = self.low_since[meters].copy()
        support = np.full(m, np.nan)
        informative = np.zeros(m, dtype=np.bool_)
        correlation = np.full(m, np.nan)
        trafo = self._trafo[meters]
        since = self.low_since[meters]
        whole = np.full(m, np.nan)
        falls = np.full(m, np.nan)
        unexplained = np.full(m, np.nan)
        for j in np.flatnonzero((trafo >= 0) & (since >= 0)).tolist():
            t = int(trafo[j])
            stood_out[j] = self._stood_out(t, int(since[j]), hour)
            first = max(int(stood_out[j]), hour - 11)
            hours = np.arange(first, hour + 1)
            cells = hours % _RING
            u = self._at_hours(self.u_wh, t, hours)
            sd = self._at_hours(self.u_sd, t, hours)
            e = self.ring_e[meters[j], cells]
            b = self.ring_b[meters[j], cells]
            ok = np.isfinite(u) & np.isfinite(e) & np.isfinite(b)
            n = int(ok.sum())
            if n < 3:
                continue
            fall = float((b[ok] - e[ok]).mean())
            noise = float(np.sqrt((sd[ok] ** 2).mean() / n))
            if fall <= 0 or noise >= 0.35 * fall:
                continue
            informative[j] = True
            falls[j] = fall
            unexplained[j] = float(u[ok].mean())
            # Six hours at least: in fewer, any unexplained energy on the transformer (a
            # neighbour's bypass) matches some meter's quiet hours by chance.
            if n >= 6 and np.std(e[ok]) > 0 and np.std(u[ok]) > 0:
                correlation[j] = float(np.corrcoef(u[ok], e[ok])[0, 1])
        for t in np.unique(trafo[informative]).tolist():
            mine = np.flatnonzero(informative & (trafo == t))
            mine = mine[np.argsort(-falls[mine], kind="stable")]
            claimed = np.where(claims[mine], falls[mine], 0.0)
            taken = np.concatenate([[0.0], np.cumsum(claimed)[:-1]])
            whole[mine] = unexplained[mine] / falls[mine]
            support[mine] = (unexplained[mine] - taken) / falls[mine]
            # Support counts only the unexplained energy that came with the fall: what the
            # transformer already had before the day in which it began (the window lags the
            # fall by up to a day) belongs to something else on it, and is taken off. Where
            # that day is not known, nothing can be told apart: the balance may only refute.
            earlier = self.earlier_w[meters[mine]]
            unknown = ~np.isfinite(earlier)
            came_first = np.where(unknown, 0.0, np.maximum(earlier, 0.0))
            dirty = came_first > 0.3 * falls[mine]
            support[mine[dirty]] -= came_first[dirty] / falls[mine[dirty]]
            support[mine[unknown]] = np.minimum(support[mine[unknown]], 0.15)  # may still refute
        return support, whole, informative, correlation, stood_out

    def _stood_out(self, t: int, since: int, hour: int, otherwise: int | None = None) -> int:
        """Return the first hour from `since` at which transformer `t`'s energy stood out.

        Its unexplained energy _STANDS_OUT spreads above the expected gap; `otherwise`
        (`since` if not given) if none was.
        """
        hours = np.arange(since, hour + 1)
        u, sd = self._at_hours(self.u_wh, t, hours), self._at_hours(self.u_sd, t, hours)
        standing = np.flatnonzero(u > _STANDS_OUT * sd)  # NaN: an hour the ring forgot
        if standing.size:
            return int(hours[standing[0]])
        return since if otherwise is None else otherwise

    def _traced(
        self, meters: Int64Array, hour: int, z: FloatArray, clear: BoolArray
    ) -> tuple[BoolArray, Int64Array]:
        """Return whether a transformer's unexplained energy follows each meter's load.

        Over the last 12 hours, on a transformer whose unexplained energy is significant
        (5 spreads summed, 200 W on average): the meter whose metered energy explains it
        in proportion (a tap taking 20-80 % of the load steals 0.25-4 times what is
        metered; 80 % of its square explained, correlation 0.7), and no other meter
        nearly as well. Shops of one kind share a shape, so that none stands out: then the
        customers whose last day is not a spread below what their history expects (`z`
        above -1) drop out, and the one picked must show a `clear` fall that the
        unexplained energy matches in size. With the hour after which the unexplained
        energy first stood out.
        """
        traced = np.zeros(meters.size, dtype=np.bool_)
        since = np.full(meters.size, -1, dtype=np.int64)
        trafo = self._trafo[meters]
        hours = np.arange(hour - _TRACE_HOURS + 1, hour + 1)
        cells = hours % _RING
        for t in np.unique(trafo[trafo >= 0]).tolist():
            u = self._at_hours(self.u_wh, t, hours)
            sd = self._at_hours(self.u_sd, t, hours)
            if not np.isfinite(u).all():
                continue
            if u.sum() < 5.0 * np.sqrt((sd**2).sum()) or u.mean() < 200.0:
                continue
            mine = np.flatnonzero(trafo == t)
            e = self.ring_e[meters[mine]][:, cells]
            ok = np.isfinite(e).all(axis=1)
            if not ok.any():
                continue
            e = np.where(np.isfinite(e), e, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                alpha = (e * u).sum(axis=1) / (e**2).sum(axis=1)
                residual = ((u[None, :] - alpha[:, None] * e) ** 2).sum(axis=1)
                explained = 1.0 - residual / (u**2).sum()
            # A meter that drew nothing in these hours explains nothing (its ratio is NaN).
            explained = np.where(ok & np.isfinite(explained), explained, -np.inf)
            best = _unique_best(explained, alpha, u, e)
            if best < 0:
                best = _unique_best(np.where(z[mine] > -1.0, -np.inf, explained), alpha, u, e)
                if best < 0 or not (
                    clear[mine[best]] and self._matches_fall(u, meters[mine[best]], cells)
                ):
                    continue
            traced[mine[best]] = True
            since[mine[best]] = self._stood_out(t, int(hours[0]), hour, otherwise=hour)
        return traced, since

    def _matches_fall(self, u: FloatArray, meter: int, cells: Int64Array) -> bool:
        """Return whether unexplained energy `u` is of the size of the meter's fall in its hours.

        What a tap takes is what the meter no longer records: a `confirm_share` of the fall
        at least, three times it at most (a baseline that learned an unusual day, or a
        transformer whose gap is off for other reasons, gives a fall the balance refutes).
        """
        fall = self.ring_b[meter, cells] - self.ring_e[meter, cells]
        known = np.isfinite(fall)
        if known.sum() < 6:
            return False
        lost = float(fall[known].sum())
        taken = float(u[known].sum())
        return lost > 0 and self.cfg.confirm_share * lost <= taken <= _MAX_SHARE * lost

    def evidence(self, slot: int) -> dict[str, Any]:
        """Give the last day's hourly energy against the baseline, and what corroborates it."""
        return dict(self.figures.get(slot, {}))

    def summarise(self, facts: IncidentFacts) -> str:
        """Describe the drop."""
        return (
            f"consumption {facts.peak_magnitude:.0%} below what its history expects, the daily "
            f"shape kept, for {format_duration(facts.duration_s)} ({facts.kwh_lost:.1f} kWh est.)"
        )


def _unique_best(explained: FloatArray, alpha: FloatArray, u: FloatArray, e: FloatArray) -> int:
    """Return the row of `e` that explains `u` in proportion and far better than any other.

    Its scale `alpha` is that of a tap taking 20-80 % of the load, it explains 80 % of the
    square of `u` with a correlation of 0.7, and the runner-up 0.2 less. A meter that would
    have to lose over four times what it records is no runner-up: no tap takes that much.
    -1 if none does.
    """
    candidate = np.where(alpha <= 4.0, explained, -np.inf)
    best = int(np.argmax(candidate))
    runner_up = np.max(np.delete(candidate, best), initial=-np.inf)
    if (
        0.25 <= alpha[best] <= 4.0
        and explained[best] >= 0.8
        and runner_up < explained[best] - 0.2
        and np.std(e[best]) > 0
        and np.corrcoef(u, e[best])[0, 1] >= 0.7
    ):
        return best
    return -1


def _variation(values: FloatArray, known: BoolArray) -> FloatArray:
    """Return each row's coefficient of variation over its known values (NaN: too few)."""
    count = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(known, values, 0.0).sum(axis=1) / count
        spread = np.sqrt(np.where(known, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / count)
        variation: FloatArray = np.where(count >= 6, spread / mean, np.nan)
    return variation


def _ratio_within(e: FloatArray, b: FloatArray, within: BoolArray) -> FloatArray:
    """Return, per row, the energy over the baseline summed over the hours `within`."""
    ratio: FloatArray = np.where(within, e, 0.0).sum(axis=1) / np.where(within, b, 0.0).sum(axis=1)
    return ratio


def _correlation(a: FloatArray, b: FloatArray, known: BoolArray) -> FloatArray:
    """Return each row's Pearson correlation of a and b over its known values (NaN: too few)."""
    count = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a = np.where(known, a, 0.0).sum(axis=1) / count
        mean_b = np.where(known, b, 0.0).sum(axis=1) / count
        da = np.where(known, a - mean_a[:, None], 0.0)
        db = np.where(known, b - mean_b[:, None], 0.0)
        cov = (da * db).sum(axis=1)
        norm = np.sqrt((da**2).sum(axis=1) * (db**2).sum(axis=1))
        correlation: FloatArray = np.where((count >= 12) & (norm > 0), cov / norm, np.nan)
    return correlation
