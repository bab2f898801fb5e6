"""Working days the customers rested on, found from the closed meter hours."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from detectors.ledger import ClosedHours
from detectors.rest_days import RestDayWatch
from meterguard.calendar import Calendar, CalendarSettings, DayType

MONDAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # 14 days from here, in UTC
WEDNESDAY = dt.date(2026, 3, 11)
CLASSES = ["shop"] * 6 + ["home"] * 6 + [None]


def _watch(
    shop_on_wednesday: float, extra: list[dt.date] | None = None, homes_only: bool = False
) -> RestDayWatch:
    classes = ["home"] * 12 if homes_only else CLASSES
    watch = RestDayWatch(classes, Calendar(CalendarSettings(extra_holidays=extra or [])))
    first = int(MONDAY.timestamp() // 3600)
    for hour in range(first, first + 14 * 24):
        day = dt.datetime.fromtimestamp(hour * 3600, dt.UTC).date()
        resting = day.weekday() == 6
        shop = 200.0 if resting else 1000.0
        if day == WEDNESDAY:
            shop *= shop_on_wednesday
        wh = np.array([500.0 if c != "shop" else shop for c in classes])
        watch.add(
            ClosedHours(
                slot=np.arange(len(classes), dtype=np.int32),
                hour=np.full(len(classes), hour, dtype=np.int64),
                wh=wh,
                covered_s=np.full(len(classes), 3600.0),
            )
        )
    return watch


@pytest.mark.parametrize(
    ("shop_on_wednesday", "named"),
    [
        (0.2, [WEDNESDAY]),  # shops at their Sunday level: a day of rest
        (0.45, [WEDNESDAY]),  # nearer their Sunday than their working day
        (0.7, []),  # a quiet working day, not a day of rest
        (1.0, []),
    ],
)
def test_a_working_day_the_shops_rested_on_is_named(
    shop_on_wednesday: float, named: list[dt.date]
) -> None:
    assert _watch(shop_on_wednesday).unlisted() == named


def test_a_day_the_calendar_lists_or_a_fleet_that_never_rests_is_not_named() -> None:
    assert _watch(0.2, extra=[WEDNESDAY]).unlisted() == []
    # Homes draw as much on Sundays: nothing tells a day of rest.
    assert _watch(0.2, homes_only=True).unlisted() == []


def test_nothing_is_named_before_a_sunday_has_been_seen() -> None:
    watch = RestDayWatch(CLASSES, Calendar())
    first = int(MONDAY.timestamp() // 3600)
    hours = np.arange(first, first + 5 * 24, dtype=np.int64)  # Monday to Friday
    slots = np.tile(np.arange(len(CLASSES), dtype=np.int32), hours.size)
    watch.add(
        ClosedHours(
            slot=slots,
            hour=np.repeat(hours, len(CLASSES)),
            wh=np.full(slots.size, 300.0),
            covered_s=np.full(slots.size, 3600.0),
        )
    )
    assert watch.unlisted() == []


def _day_by_day(
    levels: dict[str, dict[dt.date, float]], days: int = 14, **calendar: object
) -> tuple[RestDayWatch, list[dt.date]]:
    """Feed a watch one hour at a time; return it and what `settle` found, in order.

    `levels`: per class, the dates on which it drew that share of its working day (else
    a working day of 1,000 Wh an hour and Sundays at a fifth of it for shops and offices).
    """
    classes = ["shop"] * 6 + ["office"] * 6 + ["home"] * 6
    watch = RestDayWatch(classes, Calendar(CalendarSettings(**calendar)))
    settled: list[dt.date] = []
    first = int(MONDAY.timestamp() // 3600)
    for hour in range(first, first + days * 24):
        day = dt.datetime.fromtimestamp(hour * 3600, dt.UTC).date()
        usual = {c: 0.2 if day.weekday() == 6 and c != "home" else 1.0 for c in set(classes)}
        wh = [1000.0 * levels.get(c, {}).get(day, usual[c]) for c in classes]
        watch.add(
            ClosedHours(
                slot=np.arange(len(classes), dtype=np.int32),
                hour=np.full(len(classes), hour, dtype=np.int64),
                wh=np.array(wh),
                covered_s=np.full(len(classes), 3600.0),
            )
        )
        settled += watch.settle()
    return watch, settled


THURSDAY = dt.date(2026, 3, 5)  # before the fleet's first Sunday


@pytest.mark.parametrize(
    ("levels", "settled"),
    [
        # Shops and offices at their Sunday level on the second Wednesday: a day of rest.
        ({"shop": {WEDNESDAY: 0.2}, "office": {WEDNESDAY: 0.25}}, [WEDNESDAY]),
        # Offices closed but shops open: a class that rests on Sundays worked that day.
        ({"office": {WEDNESDAY: 0.2}}, []),
        # Before any Sunday, a class that drew under 60 % of its working day tells it.
        ({"shop": {THURSDAY: 0.3}, "office": {THURSDAY: 0.3}}, [THURSDAY]),
        ({"shop": {THURSDAY: 0.7}, "office": {THURSDAY: 0.7}}, []),
        # A quiet working day is not one of rest.
        ({"shop": {WEDNESDAY: 0.7}, "office": {WEDNESDAY: 0.7}}, []),
    ],
)
def test_a_working_day_the_customers_rested_on_is_settled_once_it_is_over(
    levels: dict[str, dict[dt.date, float]], settled: list[dt.date]
) -> None:
    _, found = _day_by_day(levels)
    assert found == settled


def test_a_day_is_settled_only_when_the_next_has_begun_and_only_once() -> None:
    levels = {"shop": {WEDNESDAY: 0.2}, "office": {WEDNESDAY: 0.2}}
    # The data ends with the Wednesday: not over yet, as far as the watch can tell.
    _, found = _day_by_day(levels, days=10)
    assert found == []
    watch, found = _day_by_day(levels, days=11)
    assert found == [WEDNESDAY]
    assert watch.settle() == []
    # A day the calendar lists already is not a working day to settle.
    _, found = _day_by_day(levels, extra_holidays=[WEDNESDAY])
    assert found == []


def test_a_day_of_rest_found_from_the_data_changes_the_type_of_its_hours() -> None:
    calendar = Calendar()
    first = int(dt.datetime(2026, 5, 1, tzinfo=dt.UTC).timestamp() // 3600)
    hours = np.arange(first - 1, first + 25, dtype=np.int64)
    _, before = calendar.hours(hours)  # cached as working days
    assert set(before[1:-1].tolist()) == {DayType.WEEKDAY}
    calendar.rest_on(dt.date(2026, 5, 1))
    calendar.rest_on(dt.date(2026, 5, 1))
    assert calendar.found == [dt.date(2026, 5, 1)]
    _, after = calendar.hours(hours)
    assert after[1:-1].tolist() == [DayType.SUNDAY] * 24
    assert (after[0], after[-1]) == (DayType.WEEKDAY, DayType.SATURDAY)  # as they were
    assert calendar.is_holiday(dt.date(2026, 5, 1))
