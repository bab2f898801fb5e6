"""Scenarios: theft incidents and honest confounders, from a TOML file or a seeded mix.

An incident changes what a METER measures while the true load goes on; a confounder
changes the true supply or load (or the installation) and is not theft. See
docs/SIMULATORS.md for the file format.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from meterguard.errors import MeterguardError
from simulators.calendars import CalendarError, parse_date
from simulators.population import (
    COMMERCIAL,
    INDUSTRIAL,
    RESIDENTIAL,
    FleetOptions,
    Population,
    build_population,
)

HOUR_S = 3600.0
DAY_S = 86400.0
#: Default start of a generated run: a Monday, midnight UTC.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()

#: Theft method -> the alert kind it is labelled with (docs/FORMATS.md), and what
#: `magnitude` means for it.
METHODS: dict[str, tuple[str, str]] = {
    "bypass": ("bypass", "fraction of the element's current still metered"),
    "ct_short": ("bypass", "fraction of the phase current the shorted CT still passes"),
    "reversal": ("reversal", "unused (the phase, or every phase, reads backwards)"),
    "voltage_loss": ("voltage_loss", "fraction of the phase voltage the meter still sees"),
    "phase_shift": ("phase_shift", "angle added to the metered current, degrees"),
    "meterless_tap": ("consumption_drop", "fraction of the load still passing the meter"),
    "magnet": ("tamper", "fraction of the current still registered while the magnet is on"),
    "cover_open": ("tamper", "fraction of the phase current metered after the cover opened"),
    "silenced": ("comms_loss", "unused (the meter sends nothing)"),
    "ct_misfit": ("ct_ratio", "typical load current as a fraction of the CT rating"),
    "unmetered_tap": ("energy_balance", "kW taken off the transformer past every meter"),
    "wiring_misfit": ("wiring_misfit", "share of the load on the heaviest phase (`phase`)"),
    "ct_overload": ("overload", "load current held at this share of the CT rating"),
    "added_load": ("over_demand", "demand held at this share of the contracted capacity"),
}
DEFAULT_MAGNITUDE: dict[str, float] = {
    "bypass": 0.3, "ct_short": 0.05, "reversal": 1.0, "voltage_loss": 0.0,
    "phase_shift": 60.0, "meterless_tap": 0.5, "magnet": 0.5, "cover_open": 0.3,
    "silenced": 0.0, "ct_misfit": 0.1, "unmetered_tap": 5.0,
    "wiring_misfit": 0.8, "ct_overload": 1.4, "added_load": 1.3,
}  # fmt: skip
#: Honest events that look like theft to a naive detector; never labelled.
CONFOUNDERS = ("solar", "lopsided", "sag", "brownout", "outage", "holiday", "shutdown",
               "vacation", "balanced_3p3w", "ct_heavy", "inrush")  # fmt: skip
_CONFOUNDER_MAGNITUDE = {"sag": 0.92, "brownout": 0.8, "outage": 0.0, "holiday": 0.06,
                         "shutdown": 0.1, "solar": 1.5, "lopsided": 0.0,
                         "vacation": math.nan, "balanced_3p3w": math.nan, "ct_heavy": 1.1,
                         "inrush": 2.0}  # fmt: skip
#: Vacations last this many days (capped at the run's end).
VACATION_DAYS = (2.0, 10.0)
#: A tap before the meter is a permanent installation: it lasts this many days in the mix
#: (capped at the run's end); in runs shorter than TAP_WHOLE_RUN_DAYS, to the run's end.
TAP_DAYS = (2.0, 10.0)
TAP_WHOLE_RUN_DAYS = 4.0


class ScenarioError(MeterguardError, ValueError):
    """A scenario file or option is wrong; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Incident:
    """One theft at one meter (or, for `unmetered_tap`, one transformer), with its times."""

    kind: str
    start_s: float
    end_s: float
    meter: str | None = None
    transformer: str | None = None
    #: 1..3 as the meter numbers its elements; None: every phase (or the only one).
    phase: int | None = None
    magnitude: float = math.nan
    element: str = "phase"
    terminal: bool = False

    @property
    def label_kind(self) -> str:
        """The alert kind this incident is labelled with."""
        return METHODS[self.kind][0]


@dataclass(frozen=True, slots=True)
class Confounder:
    """One honest event: on meters (holiday, shutdown, solar, lopsided) or a transformer."""

    kind: str
    start_s: float = -math.inf
    end_s: float = math.inf
    meters: tuple[str, ...] = ()
    transformer: str | None = None
    magnitude: float = math.nan
    shares: tuple[float, float, float] | None = None


@dataclass
class Scenario:
    """A fleet, a time span and what happens in it."""

    options: FleetOptions
    start_s: float = DEFAULT_START
    days: float = 3.0
    step_s: float = 60.0
    incidents: list[Incident] = field(default_factory=list)
    confounders: list[Confounder] = field(default_factory=list)
    #: Write each reading as the mean over the step before it (a load-profile interval)
    #: instead of an instantaneous sample.
    interval_mean: bool = False

    @property
    def end_s(self) -> float:
        """Time of the last reading, exclusive."""
        return self.start_s + self.days * DAY_S


# ---------------------------------------------------------------- parsing

_STEP_UNITS = {"": 1.0, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_step(raw: object, where: str = "step") -> float:
    """Return seconds from a step such as 60, "90s", "1min", "15min" or "1h"."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|min|h|)\s*", str(raw))
        if found is None:
            raise ScenarioError(f"{where}: not a step: {raw!r} (seconds, or e.g. 90s, 15min, 1h)")
        value = float(found.group(1)) * _STEP_UNITS[found.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise ScenarioError(f"{where}: the step must be positive")
    return value


def parse_start(raw: str, where: str = "start") -> float:
    """Return epoch seconds from a date (its midnight) or an RFC 3339 time; UTC if naive."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ScenarioError(f"{where}: not a date or RFC 3339 time: {raw!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _time(entry: dict[str, Any], key: str, base: float, where: str) -> float | None:
    """Read `key` (RFC 3339 or epoch) or `key_h` (hours after the run's start)."""
    if f"{key}_h" in entry:
        return base + float(entry[f"{key}_h"]) * HOUR_S
    raw = entry.get(key)
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, datetime):
        moment = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(raw, date):
        return datetime(raw.year, raw.month, raw.day, tzinfo=UTC).timestamp()
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise ScenarioError(f"{where}.{key}: not an RFC 3339 time: {raw!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _span(entry: dict[str, Any], base: float, end: float, where: str) -> tuple[float, float]:
    start = _time(entry, "start", base, where)
    start = base if start is None else start
    stop = _time(entry, "end", base, where)
    if stop is None and "duration_h" in entry:
        stop = start + float(entry["duration_h"]) * HOUR_S
    stop = end if stop is None else stop
    if stop < start:
        raise ScenarioError(f"{where}: ends before it starts")
    return start, stop


def _check_keys(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}")


_TIME_KEYS = {"start", "start_h", "end", "end_h", "duration_h"}
_FLEET_KEYS = {
    "meters", "seed", "days", "step_s", "step", "start", "nominal_v",
    "customers_per_transformer", "commercial_share", "industrial_share",
    "residential_three_phase_share", "solar_share", "neutral_measured_share_3p",
    "neutral_measured_share_1p", "slow_share", "slow_interval_s", "clock_skew_s", "mix",
    "feeders", "country", "region", "extra_holidays", "vacation_share", "heating_share",
    "interval_mean",
}  # fmt: skip


def _fleet_options(fleet: dict[str, Any], meters: int | None) -> FleetOptions:
    """Return the FleetOptions of a [fleet] table, its values checked where it matters."""
    values = {k: fleet[k] for k in set(FleetOptions.__dataclass_fields__) - {"customers"}
              if k in fleet}  # fmt: skip
    for key in ("country", "region"):
        if key in values and not isinstance(values[key], str):
            raise ScenarioError(f'fleet.{key}: a text such as "DE"')
    for key in ("feeders",):
        if key in values and not isinstance(values[key], bool):
            raise ScenarioError(f"fleet.{key}: true or false")
    if "extra_holidays" in values:
        raw = values["extra_holidays"]
        if not isinstance(raw, list):
            raise ScenarioError("fleet.extra_holidays: a list of dates")
        try:
            values["extra_holidays"] = tuple(
                parse_date(d, f"fleet.extra_holidays[{n}]") for n, d in enumerate(raw)
            )
        except CalendarError as exc:
            raise ScenarioError(str(exc)) from None
    for key in ("vacation_share", "heating_share"):
        if key in values and not 0.0 <= float(values[key]) <= 1.0:
            raise ScenarioError(f"fleet.{key}: a share between 0 and 1")
    options = FleetOptions(
        customers=int(meters if meters is not None else fleet.get("meters", 150)), **values
    )
    try:
        options.calendar()
    except CalendarError as exc:
        raise ScenarioError(f"fleet: {exc}") from None
    return options


def load_scenario(
    path: Path,
    *,
    meters: int | None = None,
    days: float | None = None,
    step_s: float | None = None,
    start_s: float | None = None,
) -> Scenario:
    """Read a TOML scenario; explicit arguments override the file's [fleet] section."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    _check_keys(doc, {"fleet", "incident", "confounder"}, str(path))
    fleet = dict(doc.get("fleet", {}))
    _check_keys(fleet, _FLEET_KEYS, "fleet")
    if "step" in fleet and "step_s" in fleet:
        raise ScenarioError("fleet: give step or step_s, not both")
    options = _fleet_options(fleet, meters)
    start = start_s if start_s is not None else _time(fleet, "start", DEFAULT_START, "fleet")
    if step_s is None:
        step_s = parse_step(fleet.get("step", fleet.get("step_s", 60.0)), "fleet.step")
    scenario = Scenario(
        options=options,
        start_s=DEFAULT_START if start is None else start,
        days=float(days if days is not None else fleet.get("days", 3.0)),
        step_s=float(step_s),
        interval_mean=bool(fleet.get("interval_mean", False)),
    )
    taken: set[str] = set()
    for n, entry in enumerate(doc.get("incident", [])):
        where = f"incident[{n}]"
        _check_keys(
            entry,
            _TIME_KEYS | {"kind", "meter", "pool", "transformer", "phase", "magnitude",
                          "element", "terminal"},
            where,
        )  # fmt: skip
        kind = str(entry.get("kind", ""))
        if kind not in METHODS:
            raise ScenarioError(f"{where}.kind: {kind!r} is not one of {', '.join(METHODS)}")
        s, e = _span(entry, scenario.start_s, scenario.end_s, where)
        phase = entry.get("phase")
        if phase is not None and phase not in (1, 2, 3):
            raise ScenarioError(f"{where}.phase: must be 1, 2 or 3")
        element = str(entry.get("element", "phase"))
        if element not in ("phase", "neutral"):
            raise ScenarioError(f"{where}.element: must be 'phase' or 'neutral'")
        meter = entry.get("meter")
        if "pool" in entry:
            if meter is not None:
                raise ScenarioError(f"{where}: give meter or pool, not both")
            meter = _from_pool(scenario.options, str(entry["pool"]), taken, where)
        if meter is not None:
            taken.add(str(meter))
        scenario.incidents.append(
            Incident(
                kind=kind,
                start_s=s,
                end_s=e,
                meter=meter,
                transformer=entry.get("transformer"),
                phase=phase,
                magnitude=float(entry.get("magnitude", DEFAULT_MAGNITUDE[kind])),
                element=element,
                terminal=bool(entry.get("terminal", False)),
            )
        )
    for n, entry in enumerate(doc.get("confounder", [])):
        where = f"confounder[{n}]"
        _check_keys(
            entry,
            _TIME_KEYS | {"kind", "meters", "pool", "count", "transformer", "magnitude", "shares"},
            where,
        )
        kind = str(entry.get("kind", ""))
        if kind not in CONFOUNDERS:
            raise ScenarioError(f"{where}.kind: {kind!r} is not one of {', '.join(CONFOUNDERS)}")
        s, e = _span(entry, scenario.start_s, scenario.end_s, where)
        shares = entry.get("shares")
        if shares is not None and (len(shares) != 3 or abs(sum(shares) - 1.0) > 1e-6):
            raise ScenarioError(f"{where}.shares: three shares that add up to 1")
        chosen = [str(m) for m in entry.get("meters", ())]
        for _ in range(int(entry.get("count", 1)) if "pool" in entry else 0):
            chosen.append(_from_pool(scenario.options, str(entry["pool"]), taken, where))
            taken.add(chosen[-1])
        scenario.confounders.append(
            Confounder(
                kind=kind,
                start_s=s,
                end_s=e,
                meters=tuple(chosen),
                transformer=entry.get("transformer"),
                magnitude=float(entry.get("magnitude", _CONFOUNDER_MAGNITUDE[kind])),
                shares=None if shares is None else (shares[0], shares[1], shares[2]),
            )
        )
    if "mix" in fleet:
        pop = build_population(options)
        extra = random_mix(pop, int(fleet["mix"]), scenario.start_s, scenario.days)
        scenario.incidents.extend(extra.incidents)
        scenario.confounders.extend(extra.confounders)
    return scenario


# ---------------------------------------------------------------- random mix


def _from_pool(options: FleetOptions, pool: str, taken: set[str], where: str) -> str:
    """Return the first customer of a pool (see POOLS) that no other incident names."""
    pop = build_population(options)
    pools = _pools(pop)
    if pool not in pools:
        raise ScenarioError(f"{where}.pool: {pool!r} is not one of {', '.join(pools)}")
    for i in pools[pool]:
        meter_id = pop.customers[int(i)].id
        if meter_id not in taken:
            return meter_id
    raise ScenarioError(f"{where}.pool: no free meter left in pool {pool!r}")


@dataclass(frozen=True, slots=True)
class _Recipe:
    kind: str
    magnitude: float
    pool: str
    phase: bool = True
    element: str = "phase"
    terminal: bool = False


#: One round of the standard suite: every method at several magnitudes, subtle ones too.
#: Pools: 3pn three-phase with neutral measurement, 3p three-phase without, 1p single-phase,
#: 1pn single-phase with neutral element, ct CT-connected, any every customer.
STANDARD_SUITE: tuple[_Recipe, ...] = (
    _Recipe("bypass", 0.0, "3pn"), _Recipe("bypass", 0.3, "3pn"),
    _Recipe("bypass", 0.6, "3pn"), _Recipe("bypass", 0.75, "3pn"),
    _Recipe("bypass", 0.0, "3p"), _Recipe("bypass", 0.5, "3p"), _Recipe("bypass", 0.7, "3p"),
    _Recipe("bypass", 0.0, "1pn"), _Recipe("bypass", 0.6, "1pn"),
    _Recipe("bypass", 0.75, "1pn"),
    _Recipe("bypass", 0.0, "1pn", element="neutral"),
    _Recipe("bypass", 0.5, "1pn", element="neutral"),
    _Recipe("ct_short", 0.0, "ct"), _Recipe("ct_short", 0.4, "ct"),
    _Recipe("reversal", 1.0, "3p"), _Recipe("reversal", 1.0, "1p"),
    _Recipe("reversal", 1.0, "3p", phase=False),
    _Recipe("voltage_loss", 0.0, "3p"), _Recipe("voltage_loss", 0.3, "3p"),
    _Recipe("voltage_loss", 0.6, "3p"),
    _Recipe("phase_shift", 25.0, "3p"), _Recipe("phase_shift", 60.0, "3p"),
    _Recipe("phase_shift", 120.0, "3p"), _Recipe("phase_shift", 40.0, "1p"),
    _Recipe("meterless_tap", 0.3, "any"), _Recipe("meterless_tap", 0.5, "any"),
    _Recipe("meterless_tap", 0.7, "any"),
    _Recipe("magnet", 0.5, "any", phase=False), _Recipe("magnet", 0.8, "any", phase=False),
    _Recipe("cover_open", 0.3, "3p"), _Recipe("cover_open", 0.6, "any", terminal=True),
    _Recipe("silenced", 0.0, "any", phase=False), _Recipe("silenced", 0.0, "any", phase=False),
    _Recipe("ct_misfit", 0.1, "ct", phase=False), _Recipe("ct_misfit", 1.3, "ct", phase=False),
    _Recipe("unmetered_tap", 3.0, "tx", phase=False),
    _Recipe("unmetered_tap", 8.0, "tx", phase=False),
)  # fmt: skip
#: Metering that does not fit the load, drawn after the suite from a generator of its own
#: (the suite's draws stay as they were): two-element meters on one-phase-heavy loads, a
#: CT held above 120 %, demand held above the contract; the heavy phase is 1 or 3.
FITNESS_SUITE: tuple[_Recipe, ...] = (
    _Recipe("ct_overload", 1.4, "ct", phase=False), _Recipe("wiring_misfit", 0.8, "ct"),
    _Recipe("added_load", 1.3, "commercial", phase=False),
    _Recipe("added_load", 1.2, "commercial", phase=False), _Recipe("wiring_misfit", 1.0, "ct"),
)  # fmt: skip
#: Their honest look-alikes: kind, pool, magnitude, duration range in hours.
FITNESS_CONFOUNDERS = (
    ("balanced_3p3w", "ct", math.nan, (math.inf, math.inf)),
    ("ct_heavy", "ct", 1.1, (3.0, 24.0)),
    ("inrush", "3p", 2.5, (0.05, 0.08)),
    ("inrush", "3p", 2.0, (0.05, 0.08)),
)
#: Customers per round of the suite; bigger fleets get several rounds.
SUITE_ROUND_METERS = 150


def _pools(pop: Population) -> dict[str, np.ndarray[Any, np.dtype[np.int64]]]:
    honest = pop.solar_kwp <= 0  # keep theft apart from legitimate export
    three, nm, ct = pop.three_phase, pop.neutral_measured, np.isfinite(pop.ct_primary)
    return {
        "3pn": np.flatnonzero(honest & three & nm & ~ct),
        "3p": np.flatnonzero(honest & three),
        "1p": np.flatnonzero(honest & ~three),
        "1pn": np.flatnonzero(honest & ~three & nm),
        "ct": np.flatnonzero(honest & ct),
        "any": np.flatnonzero(honest),
        "residential": np.flatnonzero(honest & (pop.cls == RESIDENTIAL)),
        "commercial": np.flatnonzero(honest & (pop.cls == COMMERCIAL)),
        "industrial": np.flatnonzero(honest & (pop.cls == INDUSTRIAL)),
    }


def random_mix(pop: Population, seed: int, start_s: float, days: float) -> Scenario:
    """Return incidents and confounders for `pop`, drawn from `seed`.

    Incidents start after the first day (so that a meter has history), each on its own
    meter; confounders fall on other meters or on whole transformers.
    """
    rng = np.random.default_rng([seed, 0x5CE7])
    span = days * DAY_S
    end = start_s + span
    earliest = start_s + (DAY_S if span >= 2 * DAY_S else 0.3 * span)
    latest = max(earliest, end - 0.15 * span)
    pools = _pools(pop)
    used: set[int] = set()
    out = Scenario(options=FleetOptions(customers=pop.n, seed=pop.seed), start_s=start_s,
                   days=days)  # fmt: skip
    rounds = max(1, round(pop.n / SUITE_ROUND_METERS))

    # Each pool in a random order, consumed from the end (skipping meters already used).
    queues = {name: [int(i) for i in rng.permutation(members)] for name, members in pools.items()}

    def pick(pool: str) -> int | None:
        queue = queues[pool]
        while queue:
            chosen = queue.pop()
            if chosen not in used:
                used.add(chosen)
                return chosen
        return None

    tx_free = list(rng.permutation(pop.n_tx))
    # Own generator: tap durations leave every other draw of the mix as it was.
    tap_rng = np.random.default_rng([seed, 0x7A9])
    for _ in range(rounds):
        for recipe in STANDARD_SUITE:
            s = float(rng.uniform(earliest, latest))
            e = min(end - 1.0, s + float(rng.uniform(3.0, 24.0)) * HOUR_S)
            if recipe.kind == "meterless_tap":
                lasts = float(tap_rng.uniform(*TAP_DAYS)) * DAY_S
                e = end - 1.0 if days < TAP_WHOLE_RUN_DAYS else min(end - 1.0, s + lasts)
            if recipe.kind == "unmetered_tap":
                t = int(rng.integers(pop.n_tx))
                out.incidents.append(
                    Incident(kind=recipe.kind, start_s=s, end_s=e,
                             transformer=pop.feeders[t].transformer,
                             magnitude=recipe.magnitude)
                )  # fmt: skip
                continue
            i = pick(recipe.pool)
            if i is None:
                continue
            if recipe.kind == "ct_misfit":
                s, e = start_s, end - 1.0
            elif recipe.kind == "silenced":
                e = min(end - 1.0, s + float(rng.uniform(1.0, 6.0)) * HOUR_S)
            three = bool(pop.three_phase[i])
            phase = int(rng.integers(1, 4)) if recipe.phase and three else None
            if recipe.phase and not three:
                phase = 1
            out.incidents.append(
                Incident(kind=recipe.kind, start_s=s, end_s=e, meter=pop.customers[i].id,
                         phase=phase, magnitude=recipe.magnitude, element=recipe.element,
                         terminal=recipe.terminal)
            )  # fmt: skip
        # Supply events on whole transformers: a sag, a brown-out and an outage.
        for kind, hours in (("sag", 2.0), ("brownout", 0.5), ("outage", 0.75)):
            if not tx_free:
                tx_free = list(rng.permutation(pop.n_tx))
            t = int(tx_free.pop())
            s = float(rng.uniform(earliest, latest))
            out.confounders.append(
                Confounder(kind=kind, start_s=s, end_s=s + hours * HOUR_S,
                           transformer=pop.feeders[t].transformer,
                           magnitude=_CONFOUNDER_MAGNITUDE[kind])
            )  # fmt: skip
        # A shop holiday (a whole day) and a plant shutdown (a day and a half).
        day = start_s + DAY_S * min(1.0, max(0.0, days - 1.0))
        for kind, cls, hours in (("holiday", COMMERCIAL, 24.0), ("shutdown", INDUSTRIAL, 36.0)):
            free = [int(i) for i in np.flatnonzero(pop.cls == cls) if int(i) not in used]
            chosen = [free[int(k)] for k in rng.permutation(len(free))[:2]]
            used.update(chosen)
            if chosen:
                begin = day + (0.0 if kind == "holiday" else 12.0 * HOUR_S)
                out.confounders.append(
                    Confounder(kind=kind, start_s=begin, end_s=min(end, begin + hours * HOUR_S),
                               meters=tuple(pop.customers[i].id for i in chosen),
                               magnitude=_CONFOUNDER_MAGNITUDE[kind])
                )  # fmt: skip
        # Stable but lopsided three-phase customers, from the first day on.
        free = [int(i) for i in pools["3p"] if int(i) not in used]
        lop = [free[int(k)] for k in rng.permutation(len(free))[:4]]
        used.update(lop)
        for i in lop:
            order = rng.permutation(3)
            shares = np.array([0.68, 0.25, 0.07])[order]
            out.confounders.append(
                Confounder(kind="lopsided", meters=(pop.customers[i].id,),
                           shares=(float(shares[0]), float(shares[1]), float(shares[2])))
            )  # fmt: skip
    _fitness_mix(out, pop, pick, seed, (rounds, earliest, latest, end))
    return out


def _fitness_mix(
    out: Scenario,
    pop: Population,
    pick: Any,
    seed: int,
    span: tuple[int, float, float, float],
) -> None:
    """Add the metering-fitness incidents and look-alikes to a mix, on meters still free.

    `span`: the mix's rounds, earliest and latest start and end.
    """
    rounds, earliest, latest, end = span
    rng = np.random.default_rng([seed, 0xF17])
    for _ in range(rounds):
        for recipe in FITNESS_SUITE:
            s = float(rng.uniform(earliest, latest))
            e = min(end - 1.0, s + float(rng.uniform(3.0, 24.0)) * HOUR_S)
            heavy = int(rng.choice([1, 3]))
            i = pick(recipe.pool)
            if i is None:
                continue
            out.incidents.append(
                Incident(kind=recipe.kind, start_s=s, end_s=e, meter=pop.customers[i].id,
                         phase=heavy if recipe.phase else None, magnitude=recipe.magnitude)
            )  # fmt: skip
        for kind, pool, magnitude, (shortest, longest) in FITNESS_CONFOUNDERS:
            whole = math.isinf(shortest)
            s = float(rng.uniform(earliest, latest))
            e = end if whole else min(end, s + float(rng.uniform(shortest, longest)) * HOUR_S)
            i = pick(pool)
            if i is None:
                continue
            out.confounders.append(
                Confounder(kind=kind, start_s=out.start_s if whole else s, end_s=e,
                           meters=(pop.customers[i].id,),
                           magnitude=magnitude)
            )  # fmt: skip


def draw_vacations(
    pop: Population, share: float, start_s: float, days: float, taken: set[str]
) -> list[Confounder]:
    """Return the run's vacations: `share` of the residential customers away 2-10 days.

    Homes that an incident or another confounder names are left alone. Each home's dates
    come from its own draws, so the share only decides how many homes go away.
    """
    homes = np.flatnonzero(pop.cls == RESIDENTIAL)
    count = round(share * homes.size)
    if count <= 0 or days <= 0:
        return []
    rng = np.random.default_rng([pop.seed, 0x7AC])
    order = rng.permutation(homes)
    u_day, u_hour, u_len = rng.random(pop.n), rng.random(pop.n), rng.random(pop.n)
    end = start_s + days * DAY_S
    out: list[Confounder] = []
    for i in order:
        if len(out) == count:
            break
        meter_id = pop.customers[int(i)].id
        if meter_id in taken:
            continue
        # Leave on some day of the run (at least two days before its end when it can),
        # between 06:00 and 14:00.
        day = math.floor(u_day[i] * max(1.0, days - VACATION_DAYS[0] + 1.0))
        begin = start_s + day * DAY_S + (6.0 + 8.0 * u_hour[i]) * HOUR_S
        lasts = VACATION_DAYS[0] + (VACATION_DAYS[1] - VACATION_DAYS[0]) * u_len[i]
        if begin >= end:
            begin = start_s
        out.append(Confounder(kind="vacation", start_s=begin, end_s=min(end, begin + lasts * DAY_S),
                              meters=(meter_id,)))  # fmt: skip
    return out


def mix_scenario(
    seed: int, meters: int, days: float, step_s: float = 60.0, start_s: float = DEFAULT_START
) -> Scenario:
    """Return the standard suite: a fleet of `meters` customers and a random mix on it."""
    options = FleetOptions(customers=meters, seed=seed)
    pop = build_population(options)
    mix = random_mix(pop, seed, start_s, days)
    return replace(mix, options=options, step_s=step_s, days=days, start_s=start_s)
