"""A fleet whose consumption comes from published load models, not from the simulator's own.

Each residential customer is one stochastic household of richardsonpy (the CREST domestic
electricity demand model of Richardson et al.: active occupancy, appliance use and lighting
minute by minute); commercial and industrial customers follow the BDEW standard load
profiles of demandlib (G0-G6: working days, Saturdays, Sundays, public holidays as
Sundays). Each customer's profile is computed for the run, scaled so that its typical daily
peak (the median over days of the highest 15-minute mean) is the customer's size, then
sampled at the reading times. The network, the meters, the thefts and the confounders are
the simulator's, drawn from the seed exactly as `meterguard simulate --mix SEED` draws them.

    .venv/bin/python bench/foreign_fleet.py --seed 1 --days 14 --step 15min --meters 200 \
        --country DE --out run-foreign/

`--households h0` takes the households from the BDEW H0 profile (dynamised) with noise
instead. richardsonpy is GPL-3.0 (a development extra): only this script imports it, and
the program it runs in is never combined with gurux-dlms (GPLv2-only).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from unittest import mock

import numpy as np

from meterguard.timefmt import rfc3339
from simulators.calendars import HolidayCalendar, epoch_day
from simulators.cli import step_seconds
from simulators.output import write_run
from simulators.population import (
    COMMERCIAL,
    INDUSTRIAL,
    RESIDENTIAL,
    FloatArray,
    IntArray,
    Population,
    build_population,
)
from simulators.scenario import DEFAULT_START, Scenario, ScenarioError, mix_scenario, parse_start

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
MINUTE_S = 60.0
QUARTER_S = 900.0
#: Profiles cover at least a week, so that any time (the network is sized on two reference
#: days that may lie outside the run) maps to the same weekday and hour inside them.
MIN_PROFILE_DAYS = 7
#: BDEW commercial classes and how often a shop, office, ... is of each: G0 general, G1
#: weekdays 8-18 h, G2 evening trade, G4 shops and hairdressers, G5 bakeries, G6 weekends.
COMMERCIAL_SLP = {"g0": 0.25, "g1": 0.25, "g2": 0.1, "g4": 0.25, "g5": 0.1, "g6": 0.05}
#: Household sizes (1 to 5 persons, the CREST model's range), German shares.
OCCUPANT_SHARES = (0.41, 0.33, 0.12, 0.10, 0.04)
#: An SLP is an average over many customers; one customer wanders around it. Log-normal
#: AR(1) per 15 minutes: (sd of the log, correlation from one quarter-hour to the next).
SLP_NOISE = {"business": (0.1, 0.8), "household": (0.35, 0.6)}


@dataclass(frozen=True, slots=True)
class ProfileGroup:
    """Customers whose profiles share one time grid: kW at intervals of `res_s` from `t0`."""

    customers: IntArray
    t0: float
    res_s: float
    kw: FloatArray

    def sample(self, t: FloatArray) -> FloatArray:
        """Return kW (T, n) at times `t` (T, 1), interpolated between interval midpoints.

        Times outside the profiles move by whole weeks into them (same weekday and hour).
        """
        steps = self.kw.shape[0]
        rel = t[:, 0] - self.t0
        outside = (rel < 0.0) | (rel >= steps * self.res_s)
        rel = np.where(outside, np.mod(rel, WEEK_S), rel)
        x = np.clip(rel / self.res_s - 0.5, 0.0, steps - 1.0)
        i0 = np.floor(x).astype(np.int64)
        i1 = np.minimum(i0 + 1, steps - 1)
        w = (x - i0)[:, None]
        out: FloatArray = self.kw[i0] * (1.0 - w) + self.kw[i1] * w
        return out


@dataclass(frozen=True, slots=True)
class ProfileLoad:
    """A `simulators.load.LoadModel` that plays back precomputed per-customer profiles.

    All of a customer's load is spread over its phases by its shares, with no bursts: the
    simulator's bursts change phase every 10 minutes, which a home's fixed wiring never
    does, and a three-phase home's appliances would then swing its phase balance at random.
    """

    n: int
    groups: tuple[ProfileGroup, ...]
    #: What each customer's profile is: "crest", "h0_dyn", "g0", ...
    kinds: tuple[str, ...]

    def __call__(self, pop: Population, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Return (spread, bursts), kW (T, N), at times `t` shaped (T, 1)."""
        if pop.n != self.n:
            raise ValueError(f"profiles are for {self.n} customers, the fleet has {pop.n}")
        spread = np.zeros((t.shape[0], self.n))
        for group in self.groups:
            spread[:, group.customers] = group.sample(t)
        return spread, np.zeros_like(spread)


# ---------------------------------------------------------------- calendar


def day_kinds(first_day: int, days: int, holidays: set[int]) -> list[str]:
    """Return "wd", "sa" or "su" per epoch day; a public holiday is a Sunday."""
    out = []
    for day in range(first_day, first_day + days):
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        out.append("su" if day in holidays or weekday == 6 else "sa" if weekday == 5 else "wd")
    return out


def _date(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


# ---------------------------------------------------------------- BDEW profiles (demandlib)


@functools.lru_cache(maxsize=4)
def _slp_year(year: int, holidays: frozenset[date]) -> dict[str, FloatArray]:
    """Return every BDEW profile of one year, 15-minute values (normalised to 1 a year)."""
    from demandlib import bdew  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # ElecSlp sets warnings.simplefilter("error") for the whole process, and pandas
        # warns about its use of inplace=: every warning would then fail it (or later code).
        with mock.patch.object(warnings, "simplefilter"):
            slp = bdew.ElecSlp(year=year, holidays={d: "holiday" for d in holidays})
        frame = slp.get_profiles()
        return {str(c): frame[c].to_numpy(dtype=np.float64) for c in frame.columns}


def slp_profiles(
    classes: Sequence[str], first_day: int, days: int, holidays: set[int]
) -> dict[str, FloatArray]:
    """Return the BDEW profiles of `classes` over `days` from `first_day`, 15 min each."""
    per_day = int(DAY_S / QUARTER_S)
    out: dict[str, list[FloatArray]] = {c: [] for c in classes}
    day = first_day
    while day < first_day + days:
        year = _date(day).year
        year_first, year_end = epoch_day(date(year, 1, 1)), epoch_day(date(year + 1, 1, 1))
        last = min(first_day + days, year_end)
        marked = frozenset(_date(d) for d in holidays if year_first <= d < year_end)
        profiles = _slp_year(year, marked)
        for c in classes:
            out[c].append(profiles[c][(day - year_first) * per_day : (last - year_first) * per_day])
        day = last
    return {c: np.concatenate(parts) for c, parts in out.items()}


def _wander(rng: np.random.Generator, steps: int, sd: float, phi: float) -> FloatArray:
    """Return a log-normal AR(1) factor with mean 1 (sd of its log, step correlation phi)."""
    e = rng.standard_normal(steps)
    z = np.empty(steps)
    z[0] = e[0]
    kick = math.sqrt(1.0 - phi * phi)
    for k in range(1, steps):
        z[k] = phi * z[k - 1] + kick * e[k]
    out: FloatArray = np.exp(sd * z - 0.5 * sd * sd)
    return out


# ---------------------------------------------------------------- households (richardsonpy)


@functools.lru_cache(maxsize=1)
def _irradiance_per_minute() -> FloatArray:
    """Return the CREST lighting model's input: global irradiance, W/m2, each minute a year."""
    from richardsonpy.functions import (  # type: ignore[import-untyped]
        change_resolution,
        load_radiation,
    )

    # The test reference year shipped with richardsonpy (TRY 2010, region 5).
    direct, diffuse = load_radiation.get_rad_from_try_path()
    out: FloatArray = change_resolution.change_resolution(direct + diffuse, 3600, 60)
    return out


def household_watts(
    key: str, three_phase: bool, first_day: int, kinds: Sequence[str]
) -> tuple[FloatArray, int]:
    """Return one CREST household's demand, W, each minute of `kinds` days, and its size.

    The household (occupants, appliances owned, light bulbs) and its behaviour follow from
    `key` alone. Saturdays, Sundays and holidays use the model's weekend statistics.
    """
    import richardsonpy  # type: ignore[import-untyped]
    from richardsonpy.classes import (  # type: ignore[import-untyped]
        appliance,
        electric_load,
        lighting,
        occupancy,
        stochastic_el_load_wrapper,
    )
    from richardsonpy.functions import occupancy_model

    inputs = os.path.join(os.path.dirname(richardsonpy.__file__), "inputs")
    irradiance = _irradiance_per_minute()
    # The model draws from the global `random` generator; keep the caller's state.
    saved = random.getstate()
    try:
        random.seed(key)
        occupants = 1 + int(np.searchsorted(np.cumsum(OCCUPANT_SHARES), random.random()))
        occupants = min(occupants, len(OCCUPANT_SHARES))
        house = "SFH" if three_phase else "MFH"
        # As richardsonpy's ElectricLoad: lighting takes 9 % of the reference demand.
        yearly = 0.91 * electric_load.ElectricLoad.standard_consumption[house][occupants]
        # Space and water heating are left out: the fleet's heating is not this model's.
        devices = appliance.Appliances(
            os.path.join(inputs, "Appliances.csv"),
            annual_consumption=yearly,
            randomize_appliances=True,
            prev_heat_dev=True,
        )
        bulbs = lighting.load_lighting_profile(
            os.path.join(inputs, "LightBulbs.csv"), index=random.randrange(100)
        )
        home = stochastic_el_load_wrapper.ElectricityProfile(devices, bulbs)
        first_weekday = 7 if kinds[0] != "wd" else 1
        occ = occupancy.Occupancy(occupants, initial_day=first_weekday, nb_days=1)
        minutes = int(DAY_S / MINUTE_S)
        out = np.empty(len(kinds) * minutes)
        state = occ.initial_occupancy
        for k, kind in enumerate(kinds):
            weekend = kind != "wd"
            if k == 0:
                active = list(occ.occupancy)
            else:
                tpm = occupancy.Occupancy.tpm[occupants, "we" if weekend else "wd"]
                active = occupancy_model.all_states(tpm, state)
            state = active[-1]
            day = _date(first_day + k)
            doy = min(day.timetuple().tm_yday - 1, 364)
            light = irradiance[doy * minutes : (doy + 1) * minutes]
            total, _, _ = home.power_sim(light, weekend, doy, active)
            out[k * minutes : (k + 1) * minutes] = total
        return out, occupants
    finally:
        random.setstate(saved)


# ---------------------------------------------------------------- the load model


def _typical_peak(kw: FloatArray, res_s: float, days: int) -> FloatArray:
    """Return the median over days of each column's highest 15-minute mean."""
    per_quarter = int(QUARTER_S / res_s)
    quarters = kw.reshape(days, -1, per_quarter, kw.shape[1]).mean(axis=2)
    out: FloatArray = np.median(quarters.max(axis=1), axis=0)
    return out


def slp_class(pop: Population, seed: int) -> list[str]:
    """Return the BDEW class of each non-residential customer ("" for homes).

    Commercial customers are drawn from the G classes by COMMERCIAL_SLP; industrial ones
    running three shifts follow G3 (continuous), two-shift plants G1 (working days).
    """
    rng = np.random.default_rng([seed, 0xF07E])
    names = list(COMMERCIAL_SLP)
    drawn = rng.choice(len(names), size=pop.n, p=list(COMMERCIAL_SLP.values()))
    out = []
    for i in range(pop.n):
        if pop.cls[i] == COMMERCIAL:
            out.append(names[int(drawn[i])])
        elif pop.cls[i] == INDUSTRIAL:
            out.append("g3" if pop.shifts[i] >= 3 else "g1")
        else:
            out.append("")
    return out


def build_load_model(
    pop: Population,
    start_s: float,
    days: float,
    holidays: set[int],
    households: str = "crest",
) -> ProfileLoad:
    """Return the fleet's load model: every customer's profile over the run, in kW.

    `holidays` are epoch days kept as Sundays; `households` is "crest" (richardsonpy) or
    "h0" (the BDEW household profile with noise).
    """
    first_day = math.floor(start_s / DAY_S)
    n_days = max(MIN_PROFILE_DAYS, math.ceil((start_s + days * DAY_S) / DAY_S) - first_day)
    kinds = day_kinds(first_day, n_days, holidays)
    classes = slp_class(pop, pop.seed)
    homes = pop.cls == RESIDENTIAL
    if households == "h0":
        classes = ["h0_dyn" if homes[i] else c for i, c in enumerate(classes)]
    elif households != "crest":
        raise ValueError(f"households: crest or h0, not {households!r}")
    t0 = first_day * DAY_S
    groups = []
    kinds_of = list(classes)

    by_slp = np.array([c != "" for c in classes])
    if by_slp.any():
        idx = np.flatnonzero(by_slp)
        shapes = slp_profiles(sorted({classes[i] for i in idx}), first_day, n_days, holidays)
        kw = np.empty((n_days * int(DAY_S / QUARTER_S), idx.size))
        for col, i in enumerate(idx):
            sd, phi = SLP_NOISE["household" if homes[i] else "business"]
            rng = np.random.default_rng([pop.seed, 0xF0F0, int(i)])
            kw[:, col] = shapes[classes[i]] * _wander(rng, kw.shape[0], sd, phi)
        kw *= pop.size_kw[idx] / _typical_peak(kw, QUARTER_S, n_days)
        groups.append(ProfileGroup(idx, t0, QUARTER_S, kw))

    by_crest = ~by_slp
    if by_crest.any():
        idx = np.flatnonzero(by_crest)
        watts = np.empty((n_days * int(DAY_S / MINUTE_S), idx.size))
        for col, i in enumerate(idx):
            key = f"{pop.seed}/{pop.customers[int(i)].id}"
            watts[:, col], _ = household_watts(key, bool(pop.three_phase[i]), first_day, kinds)
            kinds_of[int(i)] = "crest"
        kw = watts / 1000.0
        kw *= pop.size_kw[idx] / _typical_peak(kw, MINUTE_S, n_days)
        groups.append(ProfileGroup(idx, t0, MINUTE_S, kw))
    return ProfileLoad(pop.n, tuple(groups), tuple(kinds_of))


# ---------------------------------------------------------------- the run


def holiday_days(calendar: HolidayCalendar, start_s: float, end_s: float) -> set[int]:
    """Return the epoch days of the public holidays from a week before `start_s` to `end_s`."""
    return {d for d, _ in calendar.between(start_s - WEEK_S, end_s + WEEK_S)}


def add_holiday_rows(path: Path, scenario: Scenario, days: set[int]) -> None:
    """Append the run's public holidays to confounders.csv, unless the simulator listed them.

    A holiday's span is its first and last reading.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        if any(row and row[0] == "public_holiday" for row in csv.reader(handle)):
            return
    grid = scenario.start_s + np.arange(0.0, scenario.days * DAY_S, scenario.step_s)
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for day in sorted(days):
            inside = grid[(grid >= day * DAY_S) & (grid < (day + 1) * DAY_S)]
            if inside.size:
                span = (rfc3339(float(inside[0])), rfc3339(float(inside[-1])))
                writer.writerow(["public_holiday", "", "", *span, ""])


def foreign_scenario(args: argparse.Namespace) -> Scenario:
    """Return the standard mix of `meterguard simulate --mix SEED` for these options."""
    for name in ("meters", "days", "step_s"):
        if getattr(args, name) <= 0:
            raise ScenarioError(f"--{name.replace('_', '-')} must be positive")
    start = DEFAULT_START if args.start is None else parse_start(args.start, "--start")
    scenario = mix_scenario(args.seed, args.meters, args.days, args.step_s, start_s=start)
    changes: dict[str, object] = {"feeders": args.feeders}
    if args.country is not None:
        calendar = HolidayCalendar.of(args.country)
        changes |= {"country": calendar.country, "region": calendar.region}
    scenario.options = dataclasses.replace(scenario.options, **changes)  # type: ignore[arg-type]
    scenario.interval_mean = args.interval_mean
    return scenario


def main(argv: Sequence[str] | None = None) -> int:
    """Write a run whose customers' consumption comes from the load-model libraries."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, required=True, help="the mix's seed (--mix SEED)")
    parser.add_argument("--meters", type=int, default=150, help="customer meters (150)")
    parser.add_argument("--days", type=float, default=14.0, help="simulated days (14)")
    parser.add_argument(
        "--step", dest="step_s", type=step_seconds, default=900.0,
        help="time between readings: seconds, or 90s, 1min, 15min, 1h (15min)",
    )  # fmt: skip
    parser.add_argument("--start", default=None, help="first reading (default 2026-01-05)")
    parser.add_argument("--country", default=None, help="public holidays (DE, DE-BY, ...)")
    parser.add_argument(
        "--no-feeders", dest="feeders", action="store_false", help="no feeder meters"
    )
    parser.add_argument(
        "--households", choices=["crest", "h0"], default="crest",
        help="residential model: crest (richardsonpy, default) or h0 (BDEW H0 with noise)",
    )  # fmt: skip
    parser.add_argument(
        "--interval-mean", action="store_true",
        help="each reading the mean over the step before it (a load-profile interval)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files to")
    args = parser.parse_args(argv)
    try:
        scenario = foreign_scenario(args)
    except (ScenarioError, ValueError) as exc:
        parser.error(str(exc))
    began = time.perf_counter()
    pop = build_population(scenario.options)
    holidays = holiday_days(pop.calendar, scenario.start_s, scenario.end_s)
    model = build_load_model(pop, scenario.start_s, scenario.days, holidays, args.households)
    profiled = time.perf_counter() - began
    summary = write_run(scenario, args.out, load_model=model)
    run_days = {d for d, _ in pop.calendar.between(scenario.start_s, scenario.end_s)}
    add_holiday_rows(args.out / "confounders.csv", scenario, run_days)
    counts = {k: model.kinds.count(k) for k in sorted(set(model.kinds))}
    print(
        f"profiles of {pop.n} customers ({', '.join(f'{k} {v}' for k, v in counts.items())}) "
        f"in {profiled:.1f} s; wrote {summary.meters} meters, {summary.readings} readings "
        f"and {summary.incidents} labelled incidents to {args.out} in {summary.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
