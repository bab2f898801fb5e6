"""Public holidays of the fleet's country or region: days every customer keeps as a Sunday.

Days are counted from 1970-01-01 (epoch day = floor(t / 86400)), times being UTC taken as
local time as everywhere in the simulator. The calendar comes from the `holidays` package;
extra dates (a bridge day, a local feast) can be added by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import numpy.typing as npt

from meterguard.errors import MeterguardError

DAY_S = 86400.0
_EPOCH = date(1970, 1, 1)


class CalendarError(MeterguardError, ValueError):
    """A country, region or extra holiday is not known or not a date."""


def epoch_day(day: date) -> int:
    """Return the number of days from 1970-01-01 to `day`."""
    return (day - _EPOCH).days


def parse_date(raw: object, where: str) -> date:
    """Return a date from a `date`, a `datetime` or an ISO 8601 text (YYYY-MM-DD)."""
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw).strip())
    except ValueError:
        raise CalendarError(f"{where}: not a date (YYYY-MM-DD): {raw!r}") from None


@functools.lru_cache(maxsize=64)
def _public_days(country: str, region: str | None, year: int) -> tuple[tuple[int, str], ...]:
    """Return (epoch day, name) of every public holiday of one year, in date order."""
    import holidays  # imported here: only runs with a calendar pay for it

    try:
        found = holidays.country_holidays(country, subdiv=region, years=year)
    except NotImplementedError as exc:
        raise CalendarError(f"holiday calendar: {exc}") from None
    return tuple(sorted((epoch_day(d), str(name)) for d, name in found.items()))


@dataclass(frozen=True, slots=True)
class HolidayCalendar:
    """Public holidays of a country (and optionally one of its regions), plus extra dates."""

    country: str | None = None
    region: str | None = None
    extra: tuple[date, ...] = ()

    @classmethod
    def of(
        cls, country: str | None, region: str | None = None, extra: tuple[date, ...] = ()
    ) -> HolidayCalendar:
        """Return a checked calendar; `country` may name a region too ("DE-BY")."""
        if country is not None:
            country = country.strip().upper()
            if "-" in country and region is None:
                country, region = country.split("-", 1)
            if not country:
                raise CalendarError("holiday calendar: empty country code")
        if region is not None:
            if country is None:
                raise CalendarError(f"holiday calendar: region {region!r} without a country")
            region = region.strip().upper()
        calendar = cls(country, region, tuple(sorted(set(extra))))
        if country is not None:
            _public_days(country, region, 2026)  # an unknown country or region fails here
        return calendar

    @property
    def empty(self) -> bool:
        """Whether the calendar has no holidays at all."""
        return self.country is None and not self.extra

    def days_of_year(self, year: int) -> list[tuple[int, str]]:
        """Return (epoch day, name) of the holidays in one year, extra dates included."""
        public = list(_public_days(self.country, self.region, year)) if self.country else []
        known = {d for d, _ in public}
        extra = [epoch_day(d) for d in self.extra if d.year == year]
        return sorted(public + [(d, "extra holiday") for d in extra if d not in known])

    def between(self, start_s: float, end_s: float) -> list[tuple[int, str]]:
        """Return (epoch day, name) of the holidays that touch [start_s, end_s)."""
        if self.empty or end_s <= start_s:
            return []
        first = int(np.floor(start_s / DAY_S))
        last = int(np.ceil(end_s / DAY_S)) - 1
        years = range(_year(first), _year(last) + 1)
        return [(d, n) for y in years for d, n in self.days_of_year(y) if first <= d <= last]

    def is_holiday(self, day: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Return, for epoch days (any shape, whole numbers as floats), which are holidays."""
        if self.empty or day.size == 0:
            return np.zeros(day.shape, dtype=bool)
        lo, hi = float(np.min(day)), float(np.max(day))
        marked = [d for d, _ in self.between(lo * DAY_S, (hi + 1.0) * DAY_S)]
        out: npt.NDArray[np.bool_] = np.isin(day, np.array(marked, dtype=np.float64))
        return out


def _year(epoch_days: int) -> int:
    """Return the calendar year of an epoch day."""
    return datetime.fromtimestamp(epoch_days * DAY_S, tz=UTC).year
