"""The transformer's gap model: its loss curve against the hours of each day type."""

from __future__ import annotations

import numpy as np

from detectors.balance import GapModel
from meterguard.calendar import DayType


def _losses(gross_w: float) -> float:
    """Service-cable and backbone I²R: a quadratic of the flow, plus a fixed 300 W."""
    return 300.0 + 0.004 * gross_w + 1.2e-7 * gross_w**2


def _learned_weekdays(days: int, seed: int = 3) -> GapModel:
    rng = np.random.default_rng(seed)
    model = GapModel(1, learn_days=7.0, allowance=0.06)
    one = np.zeros(1, dtype=np.int64)
    for _day in range(days):
        level = float(np.exp(rng.normal(0.0, 0.25)))  # busier and quieter days
        for hour in range(24):
            gross = level * (60_000.0 + 50_000.0 * np.sin(np.pi * hour / 24.0) ** 2)
            gap = _losses(gross) + rng.normal(0.0, 60.0)
            model.learn(
                one,
                np.array([gross + gap]),
                np.array([gross]),
                np.array([gap]),
                np.array([DayType.WEEKDAY]),
                np.array([hour]),
            )
    return model


def _judge(model: GapModel, gross: float, day_type: int, hour: int) -> tuple[float, float, bool]:
    expected, spread, learned = model.expected(
        np.zeros(1, dtype=np.int64),
        np.array([gross + _losses(gross)]),
        np.array([gross]),
        np.array([day_type]),
        np.array([hour]),
    )
    return float(expected[0]), float(spread[0]), bool(learned[0])


def test_a_holiday_never_seen_is_judged_by_the_loss_curve_after_two_days() -> None:
    model = _learned_weekdays(2)
    # A holiday afternoon with a load the weekdays never had at that hour.
    gross = 45_000.0
    expected, spread, learned = _judge(model, gross, DayType.SUNDAY, 15)
    assert learned
    assert abs(expected - _losses(gross)) < 150.0
    assert spread < 0.005 * gross
    # 1 % of the load taken past every meter is several spreads: the hours of one day type
    # alone would have judged it against the 6 % loss allowance.
    assert 0.01 * gross > 3.0 * spread


def test_before_a_day_of_clean_hours_the_allowance_judges() -> None:
    model = _learned_weekdays(0)
    model_day = _learned_weekdays(1)
    _, spread, learned = _judge(model, 80_000.0, DayType.WEEKDAY, 10)
    assert not learned
    assert spread >= 0.06 * 80_000.0
    _, spread_day, _ = _judge(model_day, 80_000.0, DayType.WEEKDAY, 10)
    assert spread_day < 0.01 * 80_000.0


def test_solar_export_that_nearly_cancels_the_load_keeps_its_losses() -> None:
    # At noon on a sunny Sunday the check meter's net is small, but customers import and
    # export as much as on a working day: the losses are the gross flow's, not zero.
    model = _learned_weekdays(3)
    gross = 70_000.0
    expected, _, learned = model.expected(
        np.zeros(1, dtype=np.int64),
        np.array([5_000.0]),
        np.array([gross]),
        np.array([DayType.SUNDAY]),
        np.array([12]),
    )
    assert learned[0]
    assert abs(float(expected[0]) - _losses(gross)) < 150.0


def test_far_below_the_flows_learned_the_curve_never_turns_negative() -> None:
    # A quadratic fitted on a day's loads can dive below zero beyond them; losses do not.
    model = _learned_weekdays(3)
    expected, _, _ = _judge(model, 2_000.0, DayType.WEEKDAY, 3)
    assert 0.0 < expected < _losses(30_000.0)
