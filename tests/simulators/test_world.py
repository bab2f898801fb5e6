"""The world a utility's data comes from: calendar, noisy households, weather, cadence."""

from __future__ import annotations

import argparse
import csv
import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meterguard.meters_csv import read_meters_csv
from service.cli import main
from simulators import output
from simulators.calendars import HolidayCalendar
from simulators.cli import add_world_arguments, apply_world_arguments, world_argv
from simulators.climate import outdoor_temp_c
from simulators.load import HEATING_AWAY_C, HEATING_SET_C, day_kind, heating_kw
from simulators.output import write_run
from simulators.physics import FleetModel
from simulators.population import (
    COMMERCIAL,
    INDUSTRIAL,
    RESIDENTIAL,
    FleetOptions,
    FloatArray,
    build_population,
)
from simulators.scenario import (
    DAY_S,
    Confounder,
    Scenario,
    ScenarioError,
    load_scenario,
    mix_scenario,
    parse_start,
    parse_step,
)

#: A Monday; Friday 2026-05-01 is Labour Day in Germany.
MAY_START = datetime(2026, 4, 27, tzinfo=UTC).timestamp()
QUARTER = 900.0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _daily_kw(model: FleetModel, days: int, hours: tuple[float, float]) -> FloatArray:
    """Return each customer's mean true load within `hours` of each day, kW (days, N)."""
    ts = model.scenario.start_s + np.arange(0.0, days * DAY_S, QUARTER)
    load = np.nansum(model.compute(ts).true_p, axis=2).reshape(days, 96, -1) / 1000.0
    lo, hi = int(hours[0] * 4), int(hours[1] * 4)
    out: FloatArray = load[:, lo:hi].mean(axis=1)
    return out


def _world(**changes: Any) -> Scenario:
    options = dataclasses.replace(FleetOptions(customers=60, seed=3), **changes)
    return Scenario(options=options, start_s=MAY_START, days=7.0, step_s=QUARTER)


# ---------------------------------------------------------------- calendar


def test_a_public_holiday_is_a_sunday_for_shops_plants_and_homes() -> None:
    holiday = FleetModel(_world(country="DE"))
    plain = FleetModel(_world())
    pop = holiday.pop
    monday_to_friday = MAY_START + DAY_S * np.arange(5.0) + 12 * 3600.0
    assert day_kind(pop, monday_to_friday).tolist() == [0, 1, 2, 3, 6]
    with_calendar = _daily_kw(holiday, 7, (10.0, 16.0))
    without = _daily_kw(plain, 7, (10.0, 16.0))
    shops = pop.cls == COMMERCIAL
    plants = (pop.cls == INDUSTRIAL) & (pop.shifts < 3)
    for members in (shops, plants):
        thursday, friday, sunday = (with_calendar[d, members].sum() for d in (3, 4, 6))
        # Closed on Labour Day as on Sunday, open the day before and without the calendar.
        assert friday == pytest.approx(sunday, rel=0.15)
        assert friday < 0.5 * thursday
        assert without[4, members].sum() > 2.0 * friday
    # Homes keep the weekend pattern: the holiday's morning peak comes later.
    homes = (pop.cls == RESIDENTIAL) & (pop.solar_kwp == 0)
    early = _daily_kw(holiday, 7, (6.0, 7.5))[:, homes].sum(axis=1)
    early_plain = _daily_kw(plain, 7, (6.0, 7.5))[:, homes].sum(axis=1)
    assert early[4] < 0.8 * early_plain[4]
    # Other days are untouched by the calendar.
    np.testing.assert_array_equal(with_calendar[:4], without[:4])


def test_regions_and_extra_dates_make_the_calendar() -> None:
    bavaria = HolidayCalendar.of("DE-BY")
    assert (bavaria.country, bavaria.region) == ("DE", "BY")
    jan = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    names = dict(bavaria.between(jan, jan + 10 * DAY_S))
    assert len(names) == 2  # New Year and Epiphany (Bavaria only)
    assert not HolidayCalendar.of("DE", "BE").between(jan + 5 * DAY_S, jan + 6 * DAY_S)
    extra = HolidayCalendar.of(None, extra=(date(2026, 5, 4),))
    day = MAY_START / DAY_S + 7
    assert extra.is_holiday(np.array([[day], [day + 1]])).ravel().tolist() == [True, False]
    for bad in ("XX", "DE-ZZ"):
        with pytest.raises(ScenarioError, match="holiday calendar"):
            apply_world_arguments(_args("--country", bad), _world())


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_world_arguments(parser)
    return parser.parse_args(list(argv))


def test_world_options_reach_the_scenario_and_a_child_process_alike() -> None:
    argv = ["--start", "2026-04-27", "--country", "DE-BY", "--holiday", "2026-05-04",
            "--holiday", "2026-05-05", "--no-feeders", "--vacation-share", "0.1",
            "--heating-share", "0"]  # fmt: skip
    args = _args(*argv)
    assert _args(*world_argv(args)) == args
    options = apply_world_arguments(args, _world(extra_holidays=(date(2026, 4, 30),))).options
    assert (options.country, options.region, options.feeders) == ("DE", "BY", False)
    assert options.extra_holidays == (date(2026, 4, 30), date(2026, 5, 4), date(2026, 5, 5))
    assert (options.vacation_share, options.heating_share) == (0.1, 0.0)
    assert parse_start("2026-04-27") == MAY_START
    assert parse_start("2026-04-27T06:00:00Z") == MAY_START + 6 * 3600


def test_holidays_are_honest_events_never_labels(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["simulate", "--mix", "2", "--meters", "30", "--days", "7", "--step", "1h",
                 "--country", "DE", "--holiday", "2026-04-30", "--start", "2026-04-27",
                 "--out", str(out)]) == 0  # fmt: skip
    holidays = [r for r in _rows(out / "confounders.csv") if r["kind"] == "public_holiday"]
    assert [(r["start"], r["end"], r["meters"]) for r in holidays] == [
        ("2026-04-30T00:00:00Z", "2026-04-30T23:00:00Z", ""),
        ("2026-05-01T00:00:00Z", "2026-05-01T23:00:00Z", ""),
    ]
    labels = _rows(out / "labels.csv")
    assert labels
    assert {r["kind"] for r in labels}.isdisjoint({"public_holiday", "vacation", "heating"})


def test_an_unknown_country_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--mix", "1", "--meters", "10", "--days", "1", "--country", "XX",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "Country XX not available" in capsys.readouterr().err


# ---------------------------------------------------------------- households


def test_households_vary_from_day_to_day_more_than_businesses() -> None:
    model = FleetModel(_world(vacation_share=0.0, heating_share=0.0))
    pop = model.pop
    weekdays = [0, 1, 2, 3, 4]
    evening = _daily_kw(model, 7, (18.0, 22.0))[weekdays]
    opening = _daily_kw(model, 7, (10.0, 16.0))[weekdays]
    homes = (pop.cls == RESIDENTIAL) & (pop.solar_kwp == 0)
    home_spread = np.median(evening[:, homes].std(axis=0) / evening[:, homes].mean(axis=0))
    shops = pop.cls == COMMERCIAL
    shop_spread = np.median(opening[:, shops].std(axis=0) / opening[:, shops].mean(axis=0))
    assert home_spread > 0.12
    assert 0.02 < shop_spread < 0.6 * home_spread


def test_a_home_on_vacation_keeps_only_its_base_load() -> None:
    pop = build_population(_world().options)
    home = int(np.flatnonzero((pop.cls == RESIDENTIAL) & (pop.solar_kwp == 0)
                            & (pop.heating_kw_per_k == 0))[0])  # fmt: skip
    meter_id = pop.customers[home].id
    away = Confounder(kind="vacation", start_s=MAY_START + 2 * DAY_S,
                      end_s=MAY_START + 6 * DAY_S, meters=(meter_id,))  # fmt: skip
    sc = dataclasses.replace(_world(vacation_share=0.0), confounders=[away])
    model = FleetModel(sc)
    ts = MAY_START + np.arange(0.0, 7 * DAY_S, 60.0)
    frame = model.compute(ts)
    load = np.nansum(frame.true_p[:, home], axis=1) / 1000.0
    inside = (ts >= away.start_s) & (ts < away.end_s)
    # Standby (7 % of the customer's size, drifting +-20 %) and the fridge; no peaks, no bursts.
    base = (0.07 * 1.2 * pop.size_kw[home] + 0.08) * 1.12
    assert load[inside].max() < base
    assert load[~inside].max() > 2.0 * base
    assert np.isnan(model.pop.away_start).sum() == pop.n - 1
    # A heated home away keeps frost guard: heating against a lower set-point.
    t = np.array([[MAY_START]])
    set_back = heating_kw(model.pop, t, np.ones((1, pop.n), dtype=bool))
    temp = outdoor_temp_c(pop.seed, t)
    np.testing.assert_allclose(set_back[0], model.pop.heating_kw_per_k * max(0.0, HEATING_AWAY_C
                               - float(temp[0, 0])))  # fmt: skip


def test_a_share_of_homes_goes_on_vacation_for_two_to_ten_days() -> None:
    sc = mix_scenario(1, 150, 14.0, QUARTER)
    model = FleetModel(sc)
    pop = model.pop
    homes = int((pop.cls == RESIDENTIAL).sum())
    assert len(model.vacations) == round(0.05 * homes) > 2
    named = {inc.meter for inc in sc.incidents} | {m for c in sc.confounders for m in c.meters}
    for c in model.vacations:
        assert c.kind == "vacation"
        (meter_id,) = c.meters
        assert meter_id not in named
        assert pop.cls[pop.index(meter_id)] == RESIDENTIAL
        assert sc.start_s <= c.start_s < c.end_s <= sc.end_s
        days = (c.end_s - c.start_s) / DAY_S
        assert days <= 10.0
        assert days >= 2.0 or c.end_s == sc.end_s
    assert any(c.end_s < sc.end_s for c in model.vacations)
    # The share only decides how many homes go; each keeps its own dates.
    more = dataclasses.replace(sc, options=dataclasses.replace(sc.options, vacation_share=0.2))
    bigger = {c.meters: (c.start_s, c.end_s) for c in FleetModel(more).vacations}
    assert len(bigger) > len(model.vacations)
    for c in model.vacations:
        assert bigger.get(c.meters, (c.start_s, c.end_s)) == (c.start_s, c.end_s)
    none = dataclasses.replace(sc, options=dataclasses.replace(sc.options, vacation_share=0.0))
    assert not FleetModel(none).vacations


# ---------------------------------------------------------------- weather and heating


def test_the_weather_has_seasons_spells_and_a_daily_swing() -> None:
    jan = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    jul = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    hours = np.arange(0.0, 60 * DAY_S, 3600.0)
    winter, summer = outdoor_temp_c(1, jan + hours), outdoor_temp_c(1, jul + hours)
    assert summer.mean() > winter.mean() + 12.0
    daily = winter.reshape(60, 24)
    means = daily.mean(axis=1)
    # Cold snaps and warm spells: daily means wander by several degrees over weeks.
    assert np.ptp(means) > 5.0
    # Warmest in the afternoon, coldest before dawn.
    assert (daily[:, 15] > daily[:, 4]).mean() > 0.9
    assert not np.array_equal(outdoor_temp_c(2, jan + hours), winter)


def test_electric_heating_follows_the_outdoor_temperature() -> None:
    jan = dataclasses.replace(_world(vacation_share=0.0), start_s=parse_start("2026-01-05"),
                              days=14.0)  # fmt: skip
    cold = FleetModel(
        dataclasses.replace(jan, options=dataclasses.replace(jan.options, heating_share=1.0))
    )
    plain = FleetModel(
        dataclasses.replace(jan, options=dataclasses.replace(jan.options, heating_share=0.0))
    )
    pop = cold.pop
    heats = pop.heating_kw_per_k > 0
    assert heats[pop.cls != INDUSTRIAL].all()
    assert not heats[pop.cls == INDUSTRIAL].any()
    assert not (plain.pop.heating_kw_per_k > 0).any()
    ts = jan.start_s + np.arange(0.0, 14 * DAY_S, 3600.0)
    extra = (np.nansum(cold.compute(ts).true_p, axis=2)
             - np.nansum(plain.compute(ts).true_p, axis=2)) / 1000.0  # fmt: skip
    temp = outdoor_temp_c(pop.seed, ts)
    expected = pop.heating_kw_per_k * np.clip(HEATING_SET_C - temp, 0.0, None)[:, None]
    # The extra load is the heating, up to the minute-to-minute wobble of every load.
    np.testing.assert_allclose(extra, expected, rtol=0.15, atol=1e-9)
    daily_heat = extra[:, heats].sum(axis=1).reshape(14, 24).mean(axis=1)
    daily_temp = temp.reshape(14, 24).mean(axis=1)
    assert np.corrcoef(daily_heat, daily_temp)[0, 1] < -0.95
    # The heated customers are honest events of the run.
    rows = cold.honest_events()
    assert {c.meters[0] for c in rows if c.kind == "heating"} == {
        pop.customers[i].id for i in np.flatnonzero(heats)
    }


# ---------------------------------------------------------------- cables


def test_service_cables_have_realistic_loop_impedances() -> None:
    pop = build_population(FleetOptions(customers=600, seed=9))
    single, three = pop.cable_r[~pop.three_phase], pop.cable_r[pop.three_phase]
    assert single.min() >= 0.02
    assert single.max() <= 0.08
    assert three.min() >= 0.002
    assert three.max() <= 0.01
    assert np.ptp(single) > 0.04
    assert np.ptp(three) > 0.005


# ---------------------------------------------------------------- cadence and feeders


def test_step_takes_units() -> None:
    assert [parse_step(x) for x in ("60", "90s", "1min", "15min", "30min", "60min", "1h")] == [
        60.0, 90.0, 60.0, 900.0, 1800.0, 3600.0, 3600.0,
    ]  # fmt: skip
    assert parse_step(300) == 300.0
    for bad in ("0", "15 fortnights", "-1min", ""):
        with pytest.raises(ScenarioError):
            parse_step(bad)


def _quiet(tmp_path: Path, extra: str = "") -> Path:
    spec = tmp_path / "quiet.toml"
    spec.write_text(f"[fleet]\nmeters = 30\nseed = 4\ndays = 1\n{extra}")
    return spec


def test_a_quarter_hour_step_gives_96_readings_per_meter_and_day(tmp_path: Path) -> None:
    spec = _quiet(tmp_path)
    assert main(["simulate", "--scenario", str(spec), "--step", "15min",
                 "--out", str(tmp_path / "a")]) == 0  # fmt: skip
    counts: dict[str, int] = {}
    for row in _rows(tmp_path / "a" / "readings.csv"):
        counts[row["meter"]] = counts.get(row["meter"], 0) + 1
    assert len(counts) == 32
    assert set(counts.values()) == {96}
    assert main(["simulate", "--scenario", str(spec), "--step-s", "900",
                 "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    for name in ("readings.csv", "meters.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_interval_means_are_the_means_of_the_minutes_before_each_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _quiet(tmp_path, 'step = "15min"\ninterval_mean = true\n')
    scenario = load_scenario(spec, days=0.25)
    assert scenario.interval_mean
    write_run(scenario, tmp_path / "mean", show_progress=False)
    rows = [r for r in _rows(tmp_path / "mean" / "readings.csv") if r["meter"] == "M0002"]
    assert len(rows) == 24
    model = FleetModel(scenario)
    i = model.pop.index("M0002")
    for row in rows[1:4]:
        t = datetime.fromisoformat(row["ts"]).timestamp()
        frame = model.compute(t - 900.0 + np.arange(60.0, 901.0, 60.0))
        assert float(row["p1"]) == pytest.approx(frame.p[:, i, 0].mean(), abs=0.051)
        assert float(row["v1"]) == pytest.approx(frame.v[:, i, 0].mean(), abs=0.0051)
        assert float(row["i1"]) == pytest.approx(frame.i[:, i, 0].mean(), abs=0.00051)
    # A register step is the interval's mean power times its length.
    e = np.array([float(r["e_imp"]) for r in rows])
    p = np.array([float(r["p1"]) for r in rows])
    np.testing.assert_allclose(np.diff(e) * 1000.0, p[1:] * 0.25, atol=0.12)
    # Chunks of any size give the same file.
    monkeypatch.setattr(output, "CHUNK_READINGS", 100)
    write_run(load_scenario(spec, days=0.25), tmp_path / "small", show_progress=False)
    same = (tmp_path / "small" / "readings.csv").read_bytes()
    assert same == (tmp_path / "mean" / "readings.csv").read_bytes()
    # Instantaneous samples by default.
    write_run(load_scenario(_quiet(tmp_path), days=0.25, step_s=900.0), tmp_path / "inst",
              show_progress=False)  # fmt: skip
    assert (tmp_path / "inst" / "readings.csv").read_bytes() != same


def test_without_feeders_there_are_no_feeder_rows_and_no_energy_balance_labels(
    tmp_path: Path,
) -> None:
    common = ["simulate", "--mix", "5", "--meters", "50", "--days", "2", "--step", "30min"]
    assert main([*common, "--out", str(tmp_path / "with")]) == 0
    assert main([*common, "--no-feeders", "--out", str(tmp_path / "without")]) == 0
    meters = read_meters_csv(tmp_path / "without" / "meters.csv")
    assert meters
    assert all(m.role == "customer" and m.transformer for m in meters)
    ids = {m.id for m in meters}
    assert {r["meter"] for r in _rows(tmp_path / "without" / "readings.csv")} == ids
    with_labels = _rows(tmp_path / "with" / "labels.csv")
    without_labels = _rows(tmp_path / "without" / "labels.csv")
    assert any(r["kind"] == "energy_balance" for r in with_labels)
    # Every other incident is the same: only what a feeder meter alone could show is gone.
    assert without_labels == [r for r in with_labels if r["kind"] != "energy_balance"]
    spec = tmp_path / "nofeed.toml"
    spec.write_text("[fleet]\nmeters = 50\nfeeders = false\n")
    assert not load_scenario(spec).options.feeders


# ---------------------------------------------------------------- incidents and files


def test_taps_before_the_meter_last_days() -> None:
    long = mix_scenario(1, 150, 14.0, QUARTER)
    taps = [inc for inc in long.incidents if inc.kind == "meterless_tap"]
    assert len(taps) == 3
    for inc in taps:
        lasts = (inc.end_s - inc.start_s) / DAY_S
        assert inc.end_s == long.end_s - 1.0 or 2.0 <= lasts <= 10.0
    others = [inc for inc in long.incidents if inc.kind not in ("meterless_tap", "ct_misfit")]
    assert all(inc.end_s - inc.start_s <= DAY_S for inc in others)
    short = mix_scenario(1, 150, 3.0)
    assert {inc.end_s for inc in short.incidents if inc.kind == "meterless_tap"} == {
        short.end_s - 1.0
    }


def test_calendar_and_household_keys_in_a_scenario_file(tmp_path: Path) -> None:
    spec = tmp_path / "world.toml"
    spec.write_text(
        '[fleet]\nmeters = 30\nstart = 2026-04-27\ncountry = "DE"\nregion = "BY"\n'
        'extra_holidays = [2026-05-04, "2026-05-05"]\nvacation_share = 0.1\n'
        'heating_share = 0.3\nstep = "30min"\n'
    )
    sc = load_scenario(spec)
    assert sc.start_s == MAY_START
    assert sc.step_s == 1800.0
    o = sc.options
    assert (o.country, o.region, o.vacation_share, o.heating_share) == ("DE", "BY", 0.1, 0.3)
    assert o.extra_holidays == (date(2026, 5, 4), date(2026, 5, 5))
    assert load_scenario(spec, start_s=MAY_START + DAY_S).start_s == MAY_START + DAY_S
    for bad, message in (('country = "XX"', "fleet: holiday calendar"),
                         ("extra_holidays = [\"May 4\"]", "extra_holidays"),
                         ("heating_share = 2", "heating_share"),
                         ('step = "1 week"', "fleet.step")):  # fmt: skip
        spec.write_text(f"[fleet]\n{bad}\n")
        with pytest.raises(ScenarioError, match=message):
            load_scenario(spec)


def test_the_new_world_still_computes_the_same_in_chunks() -> None:
    sc = _world(country="DE", vacation_share=0.2, heating_share=0.5)
    model = FleetModel(sc)
    ts = MAY_START + 3.5 * DAY_S + np.arange(0.0, 2 * DAY_S, 300.0)
    # The window holds the holiday and the start or end of someone's vacation.
    assert any(ts[0] < t < ts[-1] for c in model.vacations for t in (c.start_s, c.end_s))
    whole = FleetModel(sc).compute(ts)
    parts = [model.compute(ts[a : a + 41]) for a in range(0, ts.size, 41)]
    for name in ("v", "i", "p", "q", "neutral", "fp", "true_p"):
        joined = np.concatenate([getattr(p, name) for p in parts])
        np.testing.assert_array_equal(joined, getattr(whole, name), err_msg=name)
    # One time alone, as a live poll computes it.
    single = FleetModel(sc).compute(ts[100:101])
    np.testing.assert_array_equal(single.p[0], whole.p[100])
