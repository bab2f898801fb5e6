"""The clock what expires reads: wall time by default, one a test moves by hand instead."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the time as epoch seconds (time.time does)."""

    def __call__(self) -> float: ...


#: The real clock.
wall_time: Clock = time.time
