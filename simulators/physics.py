"""Vectorised fleet physics: true circuits per transformer and what each meter measures.

`FleetModel.compute(ts)` returns a `Frame` for many times and every meter at once, as
numpy arrays shaped (T, N) or (T, N, 3). Everything except the energy registers is a pure
function of the seed and the time (see simulators/noise.py), so chunking does not change
the result; the registers integrate the metered power from one call to the next.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from simulators import noise
from simulators.calendars import HolidayCalendar
from simulators.fitness import install_two_element, shape_loads, two_element_readings
from simulators.load import DAY_S, LoadModel, class_load_kw, phase_loads_kw, solar_kw
from simulators.population import (
    PHASE_ANGLES,
    BoolArray,
    FloatArray,
    Population,
    build_population,
)
from simulators.scenario import (
    DEFAULT_START,
    HOUR_S,
    Confounder,
    Incident,
    Scenario,
    ScenarioError,
    draw_vacations,
)

# Noise streams of the physics (load.py and climate.py use 1..29).
_S_SRC_SLOW, _S_SRC_FAST, _S_PF, _S_FREQ, _S_FREQ_FAST = 30, 31, 32, 33, 34
_S_NV, _S_NI, _S_NA, _S_NN, _S_NF = 40, 41, 42, 43, 44

#: Measurement noise of a class-1 meter: relative sd of voltage and current, angle sd (rad).
NOISE_V, NOISE_I, NOISE_ANGLE = 2e-4, 1e-3, 1e-3
#: Voltages below this are an outage: nothing flows and nothing is measured.
DEAD_V = 1.0

#: Standard CT primary ratings for feeder meters, A.
FEEDER_CT_STEPS = np.array(
    [100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000],
    dtype=np.float64,
)


@dataclass(frozen=True, slots=True)
class MeterKey:
    """A meter of the model: customer index, or feeder (transformer) index."""

    feeder: bool
    index: int


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """A meter event at a time (epoch s)."""

    time_s: float
    key: MeterKey
    name: str


@dataclass
class Frame:
    """Every meter at T times: metered values, truth, feeders, presence, events by row."""

    ts: FloatArray
    v: FloatArray
    i: FloatArray
    p: FloatArray
    q: FloatArray
    neutral: FloatArray
    f: FloatArray
    e_imp: FloatArray
    e_exp: FloatArray
    present: BoolArray
    true_v: FloatArray
    true_i: FloatArray
    true_p: FloatArray
    true_q: FloatArray
    true_neutral: FloatArray
    fv: FloatArray
    fi: FloatArray
    fp: FloatArray
    fq: FloatArray
    ff: FloatArray
    f_e_imp: FloatArray
    f_e_exp: FloatArray
    f_present: BoolArray
    #: Technical losses per transformer phase (service cables + LV backbone), W.
    losses: FloatArray
    #: Load taken before every meter (unmetered taps), W per transformer phase.
    unmetered: FloatArray
    events: list[tuple[int, MeterKey, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Bound:
    """An incident resolved against the population."""

    incident: Incident
    meter: int
    slots: tuple[int, ...]
    tx: int


def _ct_error(x: FloatArray) -> FloatArray:
    """Return a CT's ratio error as a fraction, for load x = I / I_rated.

    Negative below 20 % (magnetising current) and above 120 % (saturation); within class
    in between.
    """
    low = -0.002 - 0.05 * np.clip((0.2 - x) / 0.2, 0.0, 1.0)
    high = -0.3 * np.clip(x - 1.2, 0.0, 1.5)
    out: FloatArray = np.where(x < 0.2, low, np.where(x > 1.2, -0.002 + high, -0.002))
    return out


class FleetModel:
    """A population under a scenario, computed in vectorised frames."""

    def __init__(
        self,
        scenario: Scenario,
        population: Population | None = None,
        load_model: LoadModel = class_load_kw,
    ) -> None:
        self.scenario = scenario
        #: Where the customers' true consumption comes from (the simulator's own by default).
        self.load_model = load_model
        #: Whether the simulator's own load model runs: then holidays, heating and
        #: vacations shape the load (a foreign model knows nothing of them).
        self.own_load = load_model is class_load_kw
        self.step_s = scenario.step_s
        pop = population or build_population(scenario.options)
        self.pop = pop
        self.seed = pop.seed
        self._tx_ids = {m.transformer: t for t, m in enumerate(pop.feeders)}
        self._apply_installation(scenario)
        # Without feeder meters, a tap past every meter can be labelled nowhere.
        incidents = [
            inc for inc in scenario.incidents if pop.feeder_meters or inc.kind != "unmetered_tap"
        ]
        self.bound = [self._bind(inc) for inc in incidents]
        self._event_incidents = [
            b for b in self.bound if b.incident.kind in ("magnet", "cover_open")
        ]
        self.supply = [c for c in scenario.confounders if c.kind in ("sag", "brownout", "outage")]
        for c in self.supply:
            if c.transformer not in self._tx_ids:
                raise ScenarioError(f"confounder {c.kind}: unknown transformer {c.transformer!r}")
        self.closures = [
            (c, np.array([pop.index(m) for m in c.meters], dtype=np.int64))
            for c in scenario.confounders
            if c.kind in ("holiday", "shutdown")
        ]
        n, n_tx = pop.n, pop.n_tx
        self.e_imp = pop.e_imp0.copy()
        self.e_exp = pop.e_exp0.copy()
        self.f_e_imp = pop.feeder_e_imp0.copy()
        self.f_e_exp = np.zeros(n_tx)
        self.last_t: float | None = None
        self._last_event_t = -math.inf
        # Customer element slots summed per transformer phase, by reduceat on sorted slots.
        target = (pop.tx[:, None] * 3 + pop.phase_of).ravel()
        live_slots = np.flatnonzero(pop.active.ravel())
        order = live_slots[np.argsort(target[live_slots], kind="stable")]
        sorted_target = target[order]
        self._agg_order = order
        self._agg_starts = np.flatnonzero(np.r_[True, np.diff(sorted_target) != 0])
        self._agg_target = sorted_target[self._agg_starts]
        self._n_tx = n_tx
        self._slot_tx = np.repeat(pop.tx[:, None], 3, axis=1)
        self._angles = PHASE_ANGLES[pop.phase_of]
        self._slot_ids = np.arange(n * 3).reshape(n, 3)
        self._is_ct = np.isfinite(pop.ct_primary)
        self._tan_phi = np.tan(np.arccos(pop.pf))
        self._size_network()
        #: Vacations of this run (drawn, and those the scenario names), after sizing: the
        #: network is built for the fleet, not for who is away this time.
        self.vacations = self._plan_vacations(scenario) if self.own_load else []

    def _size_network(self) -> None:
        """Fit each transformer's feeder CT and LV backbone to the load it really carries.

        Two reference weekdays at 15-minute steps: the feeder CT is chosen so that the 95th
        percentile current sits at 60-75 % of its rating (the 30-100 % rule), and the
        backbone resistance so that its losses are 1.5-3 % of the peak phase load.
        """
        pop = self.pop
        # Ordinary working days whatever the calendar says (the same network with or
        # without a holiday calendar).
        plain = dataclasses.replace(pop, calendar=HolidayCalendar())
        times = DEFAULT_START + np.arange(0.0, 2 * DAY_S, 900.0)
        apparent = []
        for start in range(0, times.size, 24):
            t = times[start : start + 24, None]
            p = phase_loads_kw(plain, t, None, self.load_model) * 1000.0
            q = p * self._tan_phi[None, :, None]
            apparent.append(np.hypot(self._agg(p), self._agg(q)))
        s = np.concatenate(apparent)
        peak = np.percentile(s, 95, axis=0)
        v = pop.tx_nominal_v[:, None]
        rng = np.random.default_rng([pop.seed, 0xB0B])
        wanted = peak.max(axis=1) / v[:, 0] / rng.uniform(0.6, 0.75, pop.n_tx)
        steps = FEEDER_CT_STEPS
        rating = steps[np.minimum(np.searchsorted(steps, wanted), steps.size - 1)]
        loss_share = rng.uniform(0.015, 0.03, pop.n_tx)
        pop.tx_backbone_r = loss_share * v[:, 0] ** 2 / np.maximum(peak.max(axis=1), 1000.0)
        pop.tx_backbone_x = 0.5 * pop.tx_backbone_r
        pop.feeders = [
            m.model_copy(update={"ct_primary_a": float(rating[t])})
            for t, m in enumerate(pop.feeders)
        ]

    # ------------------------------------------------------------ set-up

    def _plan_vacations(self, scenario: Scenario) -> list[Confounder]:
        """Draw the run's vacations, add the scenario's own, and mark who is away when."""
        pop = self.pop
        named = {inc.meter for inc in scenario.incidents if inc.meter is not None}
        named |= {m for c in scenario.confounders for m in c.meters}
        drawn = draw_vacations(pop, scenario.options.vacation_share, scenario.start_s,
                               scenario.days, named)  # fmt: skip
        given = [c for c in scenario.confounders if c.kind == "vacation"]
        pop.away_start[:] = np.nan
        pop.away_end[:] = np.nan
        for c in drawn + given:
            for meter_id in c.meters:
                i = self._meter_index(meter_id, "confounder vacation")
                pop.away_start[i], pop.away_end[i] = c.start_s, c.end_s
        return drawn

    def honest_events(self) -> list[Confounder]:
        """Return the run's household and calendar events that the scenario does not list.

        Drawn vacations, customers with electric heating (magnitude: kW per kelvin) and
        public holidays (one per day, no meters: every customer).
        """
        if not self.own_load:
            return []
        pop, sc = self.pop, self.scenario
        out = list(self.vacations)
        out += [
            Confounder(kind="heating", meters=(pop.customers[int(i)].id,),
                       magnitude=float(pop.heating_kw_per_k[int(i)]))
            for i in np.flatnonzero(pop.heating_kw_per_k > 0)
        ]  # fmt: skip
        out += [
            Confounder(kind="public_holiday", start_s=day * DAY_S,
                       end_s=(day + 1) * DAY_S - 1e-3)
            for day, _ in pop.calendar.between(sc.start_s, sc.end_s)
        ]  # fmt: skip
        return out

    def _meter_index(self, meter_id: str | None, where: str) -> int:
        if meter_id is None:
            raise ScenarioError(f"{where}: needs a meter")
        try:
            return self.pop.index(meter_id)
        except KeyError:
            raise ScenarioError(f"{where}: no customer meter {meter_id!r} in the fleet") from None

    def _apply_installation(self, scenario: Scenario) -> None:
        """Apply what is fixed for the whole run: solar, lopsided loads, misfit CTs."""
        pop = self.pop
        for c in scenario.confounders:
            for meter_id in c.meters:
                i = self._meter_index(meter_id, f"confounder {c.kind}")
                if c.kind == "solar":
                    pop.solar_kwp[i] = pop.size_kw[i] * c.magnitude
                elif c.kind == "lopsided":
                    if not pop.three_phase[i]:
                        raise ScenarioError(f"confounder lopsided: {meter_id} is single-phase")
                    before = pop.shares[i].max()
                    pop.shares[i] = c.shares or (0.68, 0.25, 0.07)
                    if np.isfinite(pop.ct_primary[i]):
                        # Its CT was sized for its heaviest phase, as the population's are.
                        pop.ct_primary[i] = round(pop.ct_primary[i] * pop.shares[i].max() / before)
        for inc in scenario.incidents:
            if inc.kind != "ct_misfit":
                continue
            i = self._meter_index(inc.meter, "incident ct_misfit")
            # Typical (95th percentile) current of the customer, from its size and PF.
            typical = pop.size_kw[i] * 1000.0 * 0.8 / (3.0 * pop.tx_nominal_v[0] * pop.pf[i])
            pop.ct_primary[i] = round(typical / max(inc.magnitude, 1e-3))
        pop.refresh_meters()
        try:
            self._two = install_two_element(pop, scenario)
        except (KeyError, ValueError) as exc:
            raise ScenarioError(f"metering fitness: {exc}") from None

    def _bind(self, inc: Incident) -> _Bound:
        where = f"incident {inc.kind}"
        if inc.kind == "unmetered_tap":
            if inc.transformer not in self._tx_ids:
                raise ScenarioError(f"{where}: unknown transformer {inc.transformer!r}")
            t = self._tx_ids[inc.transformer]
            slots = (inc.phase - 1,) if inc.phase else (0, 1, 2)
            return _Bound(inc, -1, slots, t)
        m = self._meter_index(inc.meter, where)
        three = bool(self.pop.three_phase[m])
        if inc.phase is not None and not three and inc.phase != 1:
            raise ScenarioError(f"{where}: {inc.meter} is single-phase (phase must be 1)")
        slots = (inc.phase - 1,) if inc.phase and three else ((0, 1, 2) if three else (0,))
        return _Bound(inc, m, slots, int(self.pop.tx[m]))

    def meter_id(self, key: MeterKey) -> str:
        """Return the id of a model meter."""
        return (self.pop.feeders if key.feeder else self.pop.customers)[key.index].id

    # ------------------------------------------------------------ events

    def events_between(self, t0: float, t1: float, key: MeterKey | None = None) -> list[TimedEvent]:
        """Return the meter events with t0 < time <= t1 (of one meter if `key`), in order."""
        if not math.isfinite(t1):
            raise ValueError("events are listed over a finite time window")
        out: list[TimedEvent] = []
        tx = None if key is None else (key.index if key.feeder else int(self.pop.tx[key.index]))
        for b in self._event_incidents:
            inc = b.incident
            own = MeterKey(False, b.meter)
            if key is not None and own != key:
                continue
            if inc.kind == "magnet":
                # Anti-tamper meters log the field when it appears and every hour it stays.
                k = max(0, math.floor((t0 - inc.start_s) / HOUR_S))
                while (at := inc.start_s + k * HOUR_S) <= min(t1, inc.end_s):
                    if at > t0:
                        out.append(TimedEvent(at, own, "magnetic_field"))
                    k += 1
            else:
                what = "terminal_cover" if inc.terminal else "cover"
                for at, name in ((inc.start_s, f"{what}_open"),
                                 (inc.start_s + 600.0, f"{what}_closed")):  # fmt: skip
                    if t0 < at <= t1:
                        out.append(TimedEvent(at, own, name))
        for c in self.supply:
            t = self._tx_ids[c.transformer]
            if c.kind != "outage" or (tx is not None and t != tx):
                continue
            for at, name in ((c.start_s, "power_down"), (c.end_s + 1e-3, "power_up")):
                if not t0 < at <= t1:
                    continue
                if key is not None:
                    out.append(TimedEvent(at, key, name))
                    continue
                out.append(TimedEvent(at, MeterKey(True, t), name))
                out.extend(
                    TimedEvent(at, MeterKey(False, int(i)), name)
                    for i in np.flatnonzero(self.pop.tx == t)
                )
        out.sort(key=lambda e: e.time_s)
        return out

    # ------------------------------------------------------------ physics

    def _agg(self, x: FloatArray) -> FloatArray:
        """Sum customer slot values (T, N, 3) per transformer phase -> (T, n_tx, 3)."""
        t_len = x.shape[0]
        flat = x.reshape(t_len, -1)[:, self._agg_order]
        sums = np.add.reduceat(flat, self._agg_starts, axis=1)
        out = np.zeros((t_len, self._n_tx * 3))
        out[:, self._agg_target] = sums
        return out.reshape(t_len, self._n_tx, 3)

    def _supply_factor(self, ts: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Return the transformer voltage factor (T, n_tx) and the outage mask."""
        factor = np.ones((ts.size, self._n_tx))
        dead = np.zeros((ts.size, self._n_tx), dtype=bool)
        for c in self.supply:
            t = self._tx_ids[c.transformer]
            rows = (ts >= c.start_s) & (ts <= c.end_s)
            if c.kind == "outage":
                dead[rows, t] = True
            else:
                factor[rows, t] *= c.magnitude
        return factor, dead

    def _idle(self, ts: FloatArray) -> FloatArray | None:
        if not self.closures:
            return None
        idle = np.full((ts.size, self.pop.n), np.nan)
        for c, members in self.closures:
            rows = np.flatnonzero((ts >= c.start_s) & (ts <= c.end_s))
            if rows.size and members.size:
                idle[np.ix_(rows, members)] = c.magnitude
        return idle

    def compute(self, ts: FloatArray) -> Frame:
        """Return every meter at times `ts` (increasing), advancing the energy registers."""
        ts = np.asarray(ts, dtype=np.float64)
        pop, seed = self.pop, self.seed
        t = ts[:, None]
        n_t = ts.size
        slot_ids = self._slot_ids

        # True consumption and generation per element slot, W.
        p_load = phase_loads_kw(pop, t, self._idle(ts), self.load_model) * 1000.0
        shape_loads(p_load, ts, pop, (b.incident for b in self.bound), self.scenario.confounders)
        tan_phi = self._tan_phi * (1.0 + 0.1 * noise.smooth(seed, _S_PF, np.arange(pop.n), t,
                                                            1800.0))  # fmt: skip
        q = p_load * tan_phi[:, :, None]
        sun = solar_kw(pop, t) * 1000.0
        per_slot = np.where(pop.three_phase, 1.0 / 3.0, 1.0)
        p = p_load - (sun * per_slot)[:, :, None] * pop.active[None, :, :]

        # Supply: slowly varying source voltage per transformer phase, sags and outages.
        factor, dead = self._supply_factor(ts)
        tx_slot = np.arange(self._n_tx)[:, None] * 3 + np.arange(3)[None, :]
        v_src = pop.tx_nominal_v[None, :, None] * (
            1.01
            + 0.012 * noise.smooth(seed, _S_SRC_SLOW, tx_slot // 3, t[:, :, None], 3 * HOUR_S)
            + 0.004 * noise.smooth(seed, _S_SRC_FAST, tx_slot, t[:, :, None], 600.0)
            - 0.01 * np.sin(2.0 * np.pi * (t[:, :, None] % DAY_S) / DAY_S - 1.2)
        )
        v_src = v_src * factor[:, :, None] * ~dead[:, :, None]
        cust_dead = dead[:, pop.tx]
        p = np.where(cust_dead[:, :, None], 0.0, p)
        q = np.where(cust_dead[:, :, None], 0.0, q)

        # Loads taken before every meter (energy_balance incidents), W per transformer phase.
        unmetered = np.zeros((n_t, self._n_tx, 3))
        h = (t % DAY_S) / 3600.0
        for b in self.bound:
            if b.incident.kind != "unmetered_tap":
                continue
            rows = (ts >= b.incident.start_s) & (ts <= b.incident.end_s) & ~dead[:, b.tx]
            shape = 0.6 + 0.4 * np.exp(-0.5 * ((h[:, 0] - 19.0) / 2.5) ** 2)
            for k in b.slots:
                unmetered[rows, b.tx, k] += (
                    b.incident.magnitude * 1000.0 * shape[rows] / len(b.slots)
                )
        p_tot = self._agg(p) + unmetered
        q_tot = self._agg(q) + unmetered * 0.3

        # LV backbone, then each service cable: voltage drops with the TRUE current.
        alive_src = v_src > DEAD_V
        safe_src = np.where(alive_src, v_src, 1.0)
        rb, xb = pop.tx_backbone_r[None, :, None], pop.tx_backbone_x[None, :, None]
        v_bus = np.where(alive_src, v_src - (rb * p_tot + xb * q_tot) / safe_src, 0.0)
        v_cust = v_bus[:, self._slot_tx, pop.phase_of]
        alive = v_cust > DEAD_V
        safe_cust = np.where(alive, v_cust, 1.0)
        r, x = pop.cable_r[None, :, None], pop.cable_x[None, :, None]
        v_true = np.where(alive, v_cust - (r * p + x * q) / safe_cust, 0.0)
        safe_true = np.where(alive, v_true, 1.0)
        s = np.hypot(p, q)
        i_true = np.where(alive, s / safe_true, 0.0) * pop.active[None, :, :]
        phi = np.arctan2(q, p)
        phasor = i_true * np.exp(1j * (self._angles[None, :, :] - phi))
        true_neutral = np.abs(phasor.sum(axis=2))

        # Feeder (check) meters: the customers' true power plus technical losses.
        cable_loss = i_true**2 * r
        i_bus = np.where(v_bus > DEAD_V, np.hypot(p_tot, q_tot) / np.where(v_bus > DEAD_V,
                         v_bus, 1.0), 0.0)  # fmt: skip
        losses = self._agg(cable_loss) + i_bus**2 * rb
        fp = p_tot + losses
        fq = q_tot + self._agg(i_true**2 * x) + i_bus**2 * xb
        fv = v_bus
        fi = np.where(v_bus > DEAD_V, np.hypot(fp, fq) / np.where(v_bus > DEAD_V, v_bus, 1.0),
                      0.0)  # fmt: skip

        # What each customer meter measures: noise, CT error, then the thefts.
        sec = np.round(ts).astype(np.int64)[:, None, None]
        nv = NOISE_V * noise.normal(seed, _S_NV, slot_ids, sec)
        ni = NOISE_I * noise.normal(seed, _S_NI, slot_ids, sec)
        na = NOISE_ANGLE * noise.normal(seed, _S_NA, slot_ids, sec)
        i_meas = i_true * (1.0 + ni)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = i_true / pop.ct_primary[None, :, None]
        i_meas = np.where(self._is_ct[None, :, None], i_meas * (1.0 + _ct_error(ratio)), i_meas)
        i_fac = np.ones_like(i_true)
        v_fac = np.ones_like(i_true)
        ang = phi + na
        n_fac = np.ones((n_t, pop.n))
        present = np.ones((n_t, pop.n), dtype=bool)
        for b in self.bound:
            inc = b.incident
            hit = np.flatnonzero((ts >= inc.start_s) & (ts <= inc.end_s))
            if not hit.size or b.meter < 0:
                continue
            m, sl = b.meter, np.array(b.slots)
            cell = (hit[:, None], m, sl[None, :])
            kind, mag = inc.kind, inc.magnitude
            if kind in ("bypass", "ct_short", "cover_open"):
                if inc.element == "neutral":
                    n_fac[hit, m] *= mag
                else:
                    i_fac[cell] *= mag
            elif kind == "reversal":
                ang[cell] += math.pi
            elif kind == "voltage_loss":
                v_fac[cell] *= mag
            elif kind == "phase_shift":
                ang[cell] += math.radians(mag)
            elif kind in ("meterless_tap", "magnet"):
                i_fac[hit, m, :] *= mag
                if kind == "meterless_tap":
                    n_fac[hit, m] *= mag
            elif kind == "silenced":
                present[hit, m] = False
        v_m = v_true * (1.0 + nv) * v_fac
        i_m = i_meas * i_fac
        v_m, i_m, p_m, q_m = two_element_readings(v_m, i_m, ang, self._angles, self._two)
        off = ~pop.active[None, :, :]
        for arr in (v_m, i_m, p_m, q_m):
            arr[np.broadcast_to(off, arr.shape)] = np.nan
        nn = NOISE_I * noise.normal(seed, _S_NN, np.arange(pop.n), sec[:, :, 0])
        neutral = np.where(pop.neutral_measured[None, :], true_neutral * n_fac * (1.0 + nn), np.nan)

        # Frequency: one grid, each meter's own small measurement error; none when dead.
        f_sys = (
            50.0
            + 0.03 * noise.smooth(seed, _S_FREQ, 0, ts, 900.0)
            + 0.01 * noise.smooth(seed, _S_FREQ_FAST, 0, ts, 60.0)
        )
        f = f_sys[:, None] + 0.002 * noise.normal(seed, _S_NF, np.arange(pop.n), sec[:, :, 0])
        f = np.where(cust_dead, np.nan, f)
        ff = np.where(dead, np.nan, np.broadcast_to(f_sys[:, None], dead.shape))

        # Presence: a dead meter sends one last zero reading (power_down), then nothing.
        step = self.step_s
        f_present = np.ones_like(dead)
        for c in self.supply:
            if c.kind != "outage":
                continue
            tx = self._tx_ids[c.transformer]
            silent = (ts >= c.start_s + step) & (ts <= c.end_s) if step > 0 else dead[:, tx]
            present[np.ix_(np.flatnonzero(silent), np.flatnonzero(pop.tx == tx))] = False
            f_present[silent, tx] = False

        # Energy registers: integrate the metered net power since the previous reading.
        net = np.nansum(p_m, axis=2)
        e_imp, e_exp = self._integrate(ts, net, self.e_imp, self.e_exp)
        f_net = fp.sum(axis=2)
        f_e_imp, f_e_exp = self._integrate(ts, f_net, self.f_e_imp, self.f_e_exp)
        self.e_imp, self.e_exp = e_imp[-1].copy(), e_exp[-1].copy()
        self.f_e_imp, self.f_e_exp = f_e_imp[-1].copy(), f_e_exp[-1].copy()
        if n_t:
            self.last_t = float(ts[-1]) if self.last_t is None else max(self.last_t, ts[-1])

        frame = Frame(
            ts=ts, v=v_m, i=i_m, p=p_m, q=q_m, neutral=neutral, f=f, e_imp=e_imp, e_exp=e_exp,
            present=present, true_v=v_true, true_i=i_true, true_p=p, true_q=q,
            true_neutral=true_neutral, fv=fv, fi=fi, fp=fp, fq=fq, ff=ff, f_e_imp=f_e_imp,
            f_e_exp=f_e_exp, f_present=f_present, losses=losses, unmetered=unmetered,
        )  # fmt: skip
        if n_t:
            first = self._last_event_t if math.isfinite(self._last_event_t) else ts[0] - 1e-9
            for ev in self.events_between(first, float(ts[-1])):
                row = int(np.searchsorted(ts, ev.time_s, side="left"))
                if row < n_t:
                    frame.events.append((row, ev.key, ev.name))
            self._last_event_t = float(ts[-1])
        return frame

    def _integrate(
        self, ts: FloatArray, net_w: FloatArray, imp0: FloatArray, exp0: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Return cumulative import/export kWh at each time, continuing from the last call."""
        if ts.size == 0:
            return np.empty((0, imp0.size)), np.empty((0, imp0.size))
        prev = ts[0] if self.last_t is None else self.last_t
        dt = np.diff(np.r_[prev, ts]).clip(min=0.0)[:, None] / 3600.0 / 1000.0
        imp = imp0[None, :] + np.cumsum(np.clip(net_w, 0.0, None) * dt, axis=0)
        exp = exp0[None, :] + np.cumsum(np.clip(-net_w, 0.0, None) * dt, axis=0)
        return imp, exp


def bound_incidents(model: FleetModel) -> list[tuple[Incident, str, int | None]]:
    """Return each incident with the meter id its label names and its label phase."""
    out: list[tuple[Incident, str, int | None]] = []
    for b in model.bound:
        inc = b.incident
        if inc.kind == "unmetered_tap":
            out.append((inc, model.pop.feeders[b.tx].id, None))
            continue
        phase = inc.phase if inc.phase is not None else None
        if inc.kind in ("meterless_tap", "magnet", "silenced", "ct_misfit", "wiring_misfit",
                        "ct_overload", "added_load"):  # fmt: skip
            phase = None
        out.append((inc, model.pop.customers[b.meter].id, phase))
    return out
