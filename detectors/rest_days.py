"""Working days the customers rested on: holidays the calendar may be missing, from the data.

A public holiday the calendar does not list is judged and learned as a working day, which
costs consumption_drop false alarms and missed taps (docs/DETECTORS.md). The customers
tell it: the classes that rest on Sundays (shops, offices, plants) draw on such a day what
they draw on a Sunday, not what they draw on a working day. This watch adds up the closed
meter hours by class and local date and names, when asked, the working days that looked
like that, so that a user can add them to the calendar. It changes no verdict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detectors.ledger import ClosedHours
from meterguard.calendar import Calendar, DayType

#: Classes with fewer customers than this are too few to speak for a date.
MIN_CLASS_METERS = 5
#: A class rests on Sundays when its Sunday draws less than this share of its working day.
RESTING_SHARE = 0.7
#: A working day looks like a Sunday when a resting class drew less than this share of the
#: way from its Sunday level up to its working-day level.
SUNDAY_LIKE = 0.4
#: Complete working days and Sundays a class needs before its levels are trusted.
MIN_WORKING_DAYS = 3
MIN_SUNDAYS = 1
#: A date counts when its meters covered this share of their hours.
COMPLETE = 0.8
DAY_S = 86_400.0


class RestDayWatch:
    """Adds up closed meter hours by customer class and local date."""

    def __init__(self, classes: Sequence[str | None], calendar: Calendar) -> None:
        names = sorted({c.casefold() for c in classes if c})
        self._names = names
        self._class = np.array(
            [names.index(c.casefold()) if c else -1 for c in classes], dtype=np.int64
        )
        self._members = np.bincount(self._class[self._class >= 0], minlength=len(names))
        self.calendar = calendar
        #: Per (local date ordinal, class): energy, Wh, and meter hours closed.
        self._wh: dict[int, npt.NDArray[np.float64]] = {}
        self._hours: dict[int, npt.NDArray[np.float64]] = {}
        #: For a live service: the data day last looked at, and the days already told.
        self._looked_on = -1
        self._told: set[dt.date] = set()

    def add(self, hours: ClosedHours) -> None:
        """Count the meter hours that closed (those of meters without a class are left out)."""
        if not hours.slot.size or not self._names:
            return
        cls = self._class[hours.slot]
        known = (cls >= 0) & (hours.covered_s > 0) & np.isfinite(hours.wh)
        if not known.any():
            return
        days = self.calendar.local_days(hours.hour[known])
        cls, wh = cls[known], hours.wh[known]
        n = len(self._names)
        for day in np.unique(days).tolist():
            here = days == day
            self._wh.setdefault(day, np.zeros(n))
            self._hours.setdefault(day, np.zeros(n))
            self._wh[day] += np.bincount(cls[here], weights=wh[here], minlength=n)
            self._hours[day] += np.bincount(cls[here], minlength=n).astype(np.float64)

    def unlisted(self) -> list[dt.date]:
        """Return the working days on which every class that rests on Sundays rested too."""
        if not self._wh:
            return []
        days = sorted(self._wh)
        wh = np.array([self._wh[d] for d in days])
        hours = np.array([self._hours[d] for d in days])
        complete = hours >= COMPLETE * 24.0 * self._members[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.where(complete, wh / hours, np.nan)
        kinds = np.array([self.calendar.day_type(dt.date.fromordinal(d)) for d in days])
        working = kinds == DayType.WEEKDAY
        sunday = kinds == DayType.SUNDAY
        rested = np.ones(len(days), dtype=np.bool_)
        resting_classes = 0
        for c in range(len(self._names)):
            if self._members[c] < MIN_CLASS_METERS:
                continue
            on_working = level[working & np.isfinite(level[:, c]), c]
            on_sunday = level[sunday & np.isfinite(level[:, c]), c]
            if on_working.size < MIN_WORKING_DAYS or on_sunday.size < MIN_SUNDAYS:
                continue
            usual, rest = float(np.median(on_working)), float(np.median(on_sunday))
            if not rest < RESTING_SHARE * usual:
                continue
            resting_classes += 1
            rested &= np.isfinite(level[:, c]) & (level[:, c] - rest < SUNDAY_LIKE * (usual - rest))
        if resting_classes == 0:
            return []
        return [dt.date.fromordinal(d) for d, r in zip(days, rested & working, strict=True) if r]

    def newly_rested(self, now: float) -> list[dt.date]:
        """Return the days `unlisted` names that it had not named before; once a data day."""
        today = int(now // DAY_S)
        if today == self._looked_on:
            return []
        self._looked_on = today
        fresh = [day for day in self.unlisted() if day not in self._told]
        self._told.update(fresh)
        return fresh


def describe(days: Sequence[dt.date]) -> str:
    """Say which working days looked like days of rest, and what that cost."""
    named = ", ".join(f"{day.isoformat()} ({day:%A})" for day in days)
    return (
        "the customers that rest on Sundays rested as on a Sunday on working days of the "
        f"calendar: {named}. Such days were judged and learned as working days"
    )
