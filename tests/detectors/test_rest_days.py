"""Working days the customers rested on, found from the closed meter hours."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from detectors.ledger import ClosedHours
from detectors.rest_days import RestDayWatch
from meterguard.calendar import Calendar, CalendarSettings

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
