"""The calendar consumption follows: local hours, weekdays, weekends and public holidays."""

from __future__ import annotations

import datetime as dt
import enum
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

HOUR_S = 3600.0


class DayType(enum.IntEnum):
    """How a day's consumption behaves: a working day, a short day, or a day of rest."""

    WEEKDAY = 0
    SATURDAY = 1
    #: Sundays and public holidays (and a country's last weekend day).
    SUNDAY = 2


DAY_TYPES = len(DayType)
#: The day types whose same hour stands in for one not seen yet, nearest first (itself first).
STAND_INS: dict[int, tuple[int, ...]] = {
    DayType.WEEKDAY: (DayType.WEEKDAY, DayType.SATURDAY, DayType.SUNDAY),
    DayType.SATURDAY: (DayType.SATURDAY, DayType.SUNDAY, DayType.WEEKDAY),
    DayType.SUNDAY: (DayType.SUNDAY, DayType.SATURDAY, DayType.WEEKDAY),
}


def known_zone(value: str) -> str:
    """Return an IANA time zone name unchanged, or raise ValueError naming it."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class CalendarSettings(BaseModel):
    """Where the fleet is: its public holidays, its weekend and its local time."""

    model_config = ConfigDict(extra="forbid")

    country: str | None = Field(
        default=None,
        description="ISO 3166 country code whose public holidays are days of rest (e.g. DE, "
        "CN, IN); none: weekends only.",
    )
    region: str | None = Field(
        default=None, description="Subdivision of the country with holidays of its own (e.g. BY)."
    )
    extra_holidays: list[dt.date] = Field(
        default_factory=list,
        description="More days judged as a Sunday: plant shutdowns, local feasts, bridge days.",
    )
    rest_days_from_data: bool = Field(
        default=True,
        description="Judge a working day as a day of rest from the end of it on when the "
        "customers that rest on Sundays rested on it as on one (a holiday the calendar "
        "lacks, a plant shutdown): detectors/rest_days.py.",
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of the fleet (e.g. Asia/Shanghai): hours of the day and "
        "day boundaries are local.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_zone(value)

    def missing_holidays(self) -> str | None:
        """Say what goes wrong when no public holiday is known; None when some are."""
        if self.country is not None or self.extra_holidays:
            return None
        until = (
            ", until its customers have shown it was a day of rest"
            if self.rest_days_from_data
            else ", and its hours are learned as a working day's"
        )
        return (
            "no holiday calendar (set [calendar] country, or --country for replay): a public "
            "holiday is judged as a working day, so a shop or office closed on one looks like "
            f"a fall in consumption{until}"
        )

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is None:
            return value
        import holidays

        if value.upper() not in holidays.list_supported_countries():
            raise ValueError(f"no holiday calendar for country {value!r}")
        return value.upper()


class Calendar:
    """Tells the local hour of the day and the type of day of data times, cached per hour."""

    def __init__(self, settings: CalendarSettings | None = None) -> None:
        self.settings = settings or CalendarSettings()
        self._zone = ZoneInfo(self.settings.timezone)
        self._extra = set(self.settings.extra_holidays)
        self._hours: dict[int, tuple[int, int, int]] = {}
        #: Working days found to have been days of rest from the data, in the order found.
        self.found: list[dt.date] = []

    @cached_property
    def _holidays(self) -> Any:
        if self.settings.country is None:
            return None
        import holidays

        return holidays.country_holidays(self.settings.country, subdiv=self.settings.region)

    def day_type(self, day: dt.date) -> DayType:
        """Return the type of a local date."""
        if day in self._extra:
            return DayType.SUNDAY
        table = self._holidays
        if table is None:
            weekend: set[int] = {5, 6}
            workday_anyway = False
        else:
            if day in table:
                return DayType.SUNDAY
            weekend = set(table.weekend)
            # Some countries move working days onto a weekend around long holidays.
            workday_anyway = day in getattr(table, "weekend_workdays", set())
        if day.weekday() not in weekend or workday_anyway:
            return DayType.WEEKDAY
        return DayType.SUNDAY if day.weekday() == max(weekend) else DayType.SATURDAY

    def rest_on(self, day: dt.date) -> None:
        """Judge a local date as a day of rest from now on: one found from the data."""
        if day in self._extra:
            return
        self._extra.add(day)
        self.found.append(day)
        ordinal = day.toordinal()
        # The cached hours of that date told another day type.
        for hour in [h for h, known in self._hours.items() if known[2] == ordinal]:
            del self._hours[hour]

    def is_holiday(self, day: dt.date) -> bool:
        """Return whether a local date is a public holiday or an extra day of rest."""
        table = self._holidays
        return day in self._extra or (table is not None and day in table)

    def _hour(self, hour: int) -> tuple[int, int, int]:
        known = self._hours.get(hour)
        if known is None:
            local = dt.datetime.fromtimestamp(hour * HOUR_S, dt.UTC).astimezone(self._zone)
            day = local.date()
            known = (local.hour, int(self.day_type(day)), day.toordinal())
            self._hours[hour] = known
        return known

    def local_days(self, hour_index: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Return the local date (proleptic ordinal) of UTC hour indices."""
        unique, inverse = np.unique(hour_index, return_inverse=True)
        table = np.array([self._hour(int(h))[2] for h in unique.tolist()], dtype=np.int64)
        days: npt.NDArray[np.int64] = table[inverse]
        return days

    def hours(
        self, hour_index: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Return the local hour of the day (0-23) and the DayType of UTC hour indices.

        An hour index is floor(epoch seconds / 3600).
        """
        if hour_index.size and hour_index.min() == hour_index.max():
            # The usual case: every reading of a tick lies in one hour.
            local, day, _ = self._hour(int(hour_index[0]))
            return np.full(hour_index.size, local), np.full(hour_index.size, day)
        unique, inverse = np.unique(hour_index, return_inverse=True)
        table = np.array([self._hour(int(h))[:2] for h in unique.tolist()], dtype=np.int64)
        table = table.reshape(-1, 2)
        return table[inverse, 0], table[inverse, 1]
