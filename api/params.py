"""Query-parameter helpers the routers share: times, and what the OpenAPI schema says of them."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any, overload

from fastapi import HTTPException

_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = (
    "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29"
)
_RFC3339 = (
    f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})[Tt ]"
    "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]{1,9})?"
    "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_EPOCH = "-?[0-9]{1,15}(?:[.][0-9]{1,9})?"
#: Exactly the times a parameter takes: epoch seconds, or an RFC 3339 date-time that is a
#: day of the calendar. The schema carries it, so what it admits the API accepts.
TIME_PATTERN = f"^(?:{_EPOCH}|{_RFC3339})$"
_TIME = re.compile(TIME_PATTERN)
_PARTS = re.compile(
    r"(\d{4})-(\d\d)-(\d\d).(\d\d):(\d\d):(\d\d)(\.\d+)?(?:[Zz]|([+-])(\d\d):(\d\d))"
)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def time_schema(description: str) -> dict[str, Any]:
    """Return the keyword arguments of a Query() that takes a time."""
    return {"description": description, "json_schema_extra": {"pattern": TIME_PATTERN}}


def parse_time_param(text: str) -> float:
    """Return epoch seconds from epoch or RFC 3339 text; ValueError says what is wrong."""
    if _TIME.fullmatch(text) is None:
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if not math.isfinite(value):
                raise ValueError(f"not a finite time: {text!r}")
        raise ValueError(f"not an RFC 3339 time or epoch seconds: {text!r}")
    parts = _PARTS.fullmatch(text)
    if parts is None:
        return float(text)
    year, month, day, hour, minute, second = (int(p) for p in parts.group(1, 2, 3, 4, 5, 6))
    # Arithmetic, not datetime.timestamp(): an offset at the ends of the calendar
    # (0001-01-01T00:00:00+01:00) is a time before year 1, which datetime cannot hold.
    days = date(year, month, day).toordinal() - _EPOCH_DAY
    seconds = days * 86_400.0 + hour * 3600 + minute * 60 + second
    seconds += float(parts.group(7) or 0.0)
    if parts.group(8):
        offset = int(parts.group(9)) * 3600 + int(parts.group(10)) * 60
        seconds -= offset if parts.group(8) == "+" else -offset
    return seconds


@overload
def time_param(text: str | None, default: float, name: str) -> float: ...


@overload
def time_param(text: str | None, default: None, name: str) -> float | None: ...


def time_param(text: str | None, default: float | None, name: str) -> float | None:
    """Return epoch seconds from an RFC 3339 or epoch parameter; a bad one is a 422."""
    if text is None:
        return default
    try:
        return parse_time_param(text)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"{name}: {exc}") from None
