"""Query-parameter helpers the routers share."""

from __future__ import annotations

import math
from typing import overload

from fastapi import HTTPException

from meterguard.timeparse import parse_time


@overload
def time_param(text: str | None, default: float, name: str) -> float: ...


@overload
def time_param(text: str | None, default: None, name: str) -> float | None: ...


def time_param(text: str | None, default: float | None, name: str) -> float | None:
    """Return epoch seconds from an RFC 3339 or epoch parameter; a bad one is a 422."""
    if text is None:
        return default
    try:
        value = parse_time(text)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"{name}: {exc}") from None
    if not math.isfinite(value):
        raise HTTPException(status_code=422, detail=f"{name}: not a finite time: {text!r}")
    return value
