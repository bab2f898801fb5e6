"""The cable drop per metered ampere: what a tap before the meter does to it, and what not."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.cable import STEEPENED_LLR, CableDrop, slope
from meterguard.model import FloatArray
from tests.conftest import make_batch

HOUR = 3600.0
OHM = 0.05
Row = tuple[float, int, dict[str, float]]


def _readings(
    hours: int, share: float = 1.0, tap_from_hour: int = 0, step: float = 60.0
) -> list[Row]:
    """One single-phase meter read every `step`: appliances switching, a wandering supply.

    The cable drops `OHM` per ampere of the true load; from `tap_from_hour` the meter
    sees only `share` of it.
    """
    rng = np.random.default_rng(3)
    times = np.arange(0.0, hours * HOUR, step)
    # Appliances: a base load and bursts of 1-3 kW lasting a few readings.
    on = rng.random(times.size) < 0.15
    true_w = 150.0 + np.where(on, rng.uniform(1000.0, 3000.0, times.size), 0.0)
    # The supply wanders by about a volt in 15 minutes, as a random walk.
    supply = 232.0 + np.cumsum(rng.normal(0.0, 0.25 * np.sqrt(step / 60.0), times.size))
    volts = supply - OHM * true_w / 230.0 + rng.normal(0.0, 0.05, times.size)
    metered = np.where(times >= tap_from_hour * HOUR, share, 1.0) * true_w
    return [
        (float(t), 0, {"v1": float(v), "p1": float(p)})
        for t, v, p in zip(times, volts, metered, strict=True)
    ]


def _tracker(rows: list[Row], per_batch: int) -> CableDrop:
    cable = CableDrop(np.array([230.0]), 72)
    for start in range(0, len(rows), per_batch):
        cable.add(make_batch(rows[start : start + per_batch]))
    return cable


def _hours(cable: CableDrop, first: int, last: int) -> FloatArray:
    return cable.recent(np.array([0]), np.array([first]), last)


def test_an_honest_meter_s_slope_is_its_cable_s_resistance() -> None:
    cable = _tracker(_readings(12), per_batch=50)
    ohm, error = slope(_hours(cable, 0, 11))
    assert ohm[0] == pytest.approx(OHM, rel=0.1)
    assert error[0] < 0.1 * OHM


def test_a_tap_steepens_the_slope_by_the_inverse_of_the_share_metered() -> None:
    cable = _tracker(_readings(12, share=0.4, tap_from_hour=6), per_batch=50)
    for hour in range(6):
        cable.learn(np.array([0]), hour)
    usual, _ = slope(cable.learned(np.array([0])))
    now, _ = slope(_hours(cable, 7, 11))
    assert usual[0] == pytest.approx(OHM, rel=0.1)
    assert now[0] / usual[0] == pytest.approx(1 / 0.4, rel=0.15)


def test_the_figures_do_not_depend_on_how_readings_are_batched() -> None:
    rows = _readings(4)
    one = _hours(_tracker(rows, per_batch=len(rows)), 0, 3)
    many = _hours(_tracker(rows, per_batch=7), 0, 3)
    np.testing.assert_allclose(many, one, rtol=1e-9)


def test_a_reading_from_a_clock_gone_back_and_a_supply_step_pair_with_nothing() -> None:
    rows = _readings(2)
    clean = _hours(_tracker(rows, per_batch=30), 0, 1)
    # A sag of 20 V at a reading where an appliance switched on: paired, it would read as
    # a cable of ohms.
    at = next(k for k in range(100, len(rows)) if rows[k][2]["p1"] - rows[k - 1][2]["p1"] > 900)
    t, slot, values = rows[at]
    sagged = [*rows[:at], (t, slot, {**values, "v1": values["v1"] - 20.0}), *rows[at + 1 :]]
    without_late = _hours(_tracker(sagged, per_batch=30), 0, 1)
    ohm_clean, _ = slope(clean)
    ohm_sagged, _ = slope(without_late)
    assert ohm_sagged[0] == pytest.approx(ohm_clean[0], rel=0.05)
    # Between two batches, a reading stamped five minutes back, alone in its batch (kept as
    # the meter's latest, it would pair with the next reading): nothing changes.
    late = (rows[59][0] - 300.0, 0, {"v1": rows[59][2]["v1"] - 3.0, "p1": 9000.0})
    cable = CableDrop(np.array([230.0]), 72)
    for part in (sagged[:60], [late], sagged[60:]):
        cable.add(make_batch(part))
    np.testing.assert_allclose(_hours(cable, 0, 1), without_late, rtol=1e-12)


def test_at_15_minute_readings_the_error_says_the_slope_is_not_known() -> None:
    # The supply wanders between readings more than the cable drops: the slope's error
    # must be large against the cable's resistance, so that no tap is told from it.
    rows = _readings(48, step=900.0)
    _, error = slope(_hours(_tracker(rows, per_batch=20), 24, 47))
    assert error[0] > 0.25 * OHM


def _learned(rows: list[Row], hours: int) -> CableDrop:
    """A tracker fed `rows` whose first `hours` are learned as the meter's normal."""
    cable = _tracker(rows, per_batch=60)
    for hour in range(hours):
        cable.learn(np.array([0]), hour)
    return cable


def test_the_cable_s_sum_dates_a_tap_and_stays_at_zero_without_one() -> None:
    meter = np.array([0])
    honest = _tracker(_readings(48), per_batch=60)
    tapped = _tracker(_readings(48, share=0.5, tap_from_hour=30), per_batch=60)
    for cable in (honest, tapped):
        for hour in range(24):
            cable.learn(meter, hour)
    for hour in range(24, 48):
        honest.advance(meter, hour)
        tapped.advance(meter, hour)
        if hour == 29:
            assert tapped.since[0] == -1
    assert honest.evidence[0] < STEEPENED_LLR / 4
    assert tapped.evidence[0] >= STEEPENED_LLR
    assert 30 <= tapped.since[0] <= 31
    ratio, sure = tapped.steepening(meter, tapped.since[meter], 47)
    assert sure[0]
    assert ratio[0] == pytest.approx(2.0, rel=0.15)


def test_a_cable_whose_slope_varies_from_day_to_day_needs_more_to_be_sure() -> None:
    # The same steepening on two meters: one whose slope is steady from day to day, one
    # whose slope swings by half (its load ramping with its neighbours').
    meter = np.array([0])
    steady = _learned(_readings(24 * 6, share=0.6, tap_from_hour=24 * 5), 24 * 5)
    rows = _readings(24 * 6, share=0.6, tap_from_hour=24 * 5)
    swinging = []
    for t, slot, values in rows:
        day = int(t // (24 * HOUR))
        # The voltage drop of every other day's loads is half again as steep.
        excess = 0.5 * OHM * values["p1"] / 230.0 if day % 2 and day < 5 else 0.0
        swinging.append((t, slot, {**values, "v1": values["v1"] - excess}))
    swings = _learned(swinging, 24 * 5)
    assert swings.dispersion(meter)[0] > 1.3 * steady.dispersion(meter)[0]
    first = np.array([24 * 5 + 1])
    steady_ratio, steady_sure = steady.steepening(meter, first, 24 * 6 - 1)
    _, swing_sure = swings.steepening(meter, first, 24 * 6 - 1)
    assert steady_sure[0]
    assert not swing_sure[0]
    assert steady_ratio[0] > 1.5


def test_one_steep_hour_is_forgotten_and_leaves_no_change_point() -> None:
    # An hour whose pairs read three times the cable (an appliance fault, a neighbour's
    # motor starting with each step): the sum rises, then honest hours bring it back.
    meter = np.array([0])
    rows = []
    for t, slot, values in _readings(48):
        if 26 * HOUR <= t < 27 * HOUR:
            values = {**values, "v1": values["v1"] - 2.0 * OHM * values["p1"] / 230.0}
        rows.append((t, slot, values))
    cable = _tracker(rows, per_batch=60)
    for hour in range(24):
        cable.learn(meter, hour)
    for hour in range(24, 27):
        cable.advance(meter, hour)
    assert cable.since[0] == 26
    for hour in range(27, 48):
        cable.advance(meter, hour)
    assert cable.since[0] == -1
    assert cable.evidence[0] < STEEPENED_LLR / 4
