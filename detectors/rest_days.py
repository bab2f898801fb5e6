"""Working days the customers rested on: holidays the calendar may be missing, from the data.

A public holiday the calendar does not list would be judged and learned as a working day,
which costs consumption_drop false alarms and missed taps (docs/DETECTORS.md). The
customers tell it: the classes that rest on Sundays (shops, offices, plants) draw on such a
day what they draw on a Sunday, not what they draw on a working day. This watch adds up the
closed meter hours by class and local date. As each working day is complete it says whether
the customers rested on it (`settle`), so that the engine judges it as a day of rest from
then on; at the end it names the days that looked like that (`unlisted`), so that a user
can add them to the calendar.
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
#: Before a class has shown a Sunday, a working day on which it drew less than this share
#: of its usual working day is one it rested on: no customer's theft moves a whole class.
COLLAPSE = 0.6
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
        #: The last local date `settle` has looked at (proleptic ordinal).
        self._settled = -1

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

    def _levels(
        self, days: list[int]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Return each class's mean hourly Wh per complete date; which are working days, Sundays."""
        wh = np.array([self._wh[d] for d in days]).reshape(len(days), len(self._names))
        hours = np.array([self._hours[d] for d in days]).reshape(wh.shape)
        complete = hours >= COMPLETE * 24.0 * self._members[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.where(complete, wh / hours, np.nan)
        kinds = np.array([self.calendar.day_type(dt.date.fromordinal(d)) for d in days])
        return level, kinds == DayType.WEEKDAY, kinds == DayType.SUNDAY

    def settle(self) -> list[dt.date]:
        """Return the working days, complete since the last call, the customers rested on.

        A date is looked at once, when a later date's hours have begun to close. Each class
        with 5 customers and 3 complete working days before it speaks: one that rests on
        Sundays by whether it drew nearer its Sunday than its working day (as `unlisted`),
        one that has not shown a Sunday yet only when it drew less than 60 % of its working
        day. The date was one of rest when at least one class rested and no class that
        rests on Sundays worked.
        """
        if not self._wh or not self._names:
            return []
        latest = max(self._wh)
        found = []
        for day in sorted(d for d in self._wh if self._settled < d < latest):
            self._settled = day
            if self._rested_on(day):
                found.append(dt.date.fromordinal(day))
        return found

    def _rested_on(self, day: int) -> bool:
        """Whether the customers rested on a working day, judged by the days before it."""
        if self.calendar.day_type(dt.date.fromordinal(day)) != DayType.WEEKDAY:
            return False
        before = sorted(d for d in self._wh if d < day)
        if not before:
            return False
        level, working, sunday = self._levels(before)
        today = self._levels([day])[0][0]
        rested = 0
        for c in range(len(self._names)):
            usual, rest = self._norms(level, working, sunday, c)
            if usual is None or not np.isfinite(today[c]):
                continue
            if rest is None:
                rested += int(today[c] < COLLAPSE * usual)
            elif rest < RESTING_SHARE * usual:
                if not _sunday_like(float(today[c]), usual, rest):
                    return False  # a class that rests on Sundays worked
                rested += 1
            # else the class draws as much on Sundays: it tells nothing
        return rested > 0

    def _norms(
        self,
        level: npt.NDArray[np.float64],
        working: npt.NDArray[np.bool_],
        sunday: npt.NDArray[np.bool_],
        c: int,
    ) -> tuple[float | None, float | None]:
        """Return class `c`'s usual working-day and Sunday levels; None where too little is known.

        A class speaks with 5 customers and 3 complete working days; its Sunday, with one.
        """
        on_working = level[working & np.isfinite(level[:, c]), c]
        if self._members[c] < MIN_CLASS_METERS or on_working.size < MIN_WORKING_DAYS:
            return None, None
        on_sunday = level[sunday & np.isfinite(level[:, c]), c]
        rest = float(np.median(on_sunday)) if on_sunday.size >= MIN_SUNDAYS else None
        return float(np.median(on_working)), rest

    def unlisted(self, over_only: bool = False) -> list[dt.date]:
        """Return the working days on which every class that rests on Sundays rested too.

        `over_only`: leave out the latest date, whose hours may still be closing.
        """
        if not self._wh:
            return []
        days = sorted(self._wh)
        if over_only:
            days = days[:-1]
        if not days:
            return []
        level, working, sunday = self._levels(days)
        rested = np.ones(len(days), dtype=np.bool_)
        resting_classes = 0
        for c in range(len(self._names)):
            usual, rest = self._norms(level, working, sunday, c)
            if usual is None or rest is None or not rest < RESTING_SHARE * usual:
                continue
            resting_classes += 1
            rested &= np.isfinite(level[:, c]) & _sunday_like(level[:, c], usual, rest)
        if resting_classes == 0:
            return []
        return [dt.date.fromordinal(d) for d, r in zip(days, rested & working, strict=True) if r]

    def newly_rested(self, now: float) -> list[dt.date]:
        """Return the days over that `unlisted` names and had not named before; once a data day."""
        today = int(now // DAY_S)
        if today == self._looked_on:
            return []
        self._looked_on = today
        fresh = [day for day in self.unlisted(over_only=True) if day not in self._told]
        self._told.update(fresh)
        return fresh

    def newly_found(self) -> list[dt.date]:
        """Return the days the calendar took as days of rest from the data, not told yet."""
        fresh = [day for day in self.calendar.found if day not in self._told]
        self._told.update(fresh)
        return fresh


def _sunday_like(
    level: float | npt.NDArray[np.float64], usual: float, rest: float
) -> npt.NDArray[np.bool_]:
    """Whether a class's level is nearer its Sunday than its working day (elementwise)."""
    return np.asarray(level - rest < SUNDAY_LIKE * (usual - rest))


def describe(days: Sequence[dt.date], *, taken: bool = False) -> str:
    """Say which working days looked like days of rest, and what was made of them.

    `taken`: the days were judged as days of rest once each was over (`settle`).
    """
    named = ", ".join(f"{day.isoformat()} ({day:%A})" for day in days)
    done = (
        "Each was judged as a day of rest once it was over; its own hours were judged as a "
        "working day's"
        if taken
        else "Such days were judged and learned as working days"
    )
    return (
        "the customers that rest on Sundays rested as on a Sunday on working days of the "
        f"calendar: {named}. {done}"
    )
