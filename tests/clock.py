"""A clock the test moves by hand, for whatever expires: tokens, the token cache, logins."""

from __future__ import annotations

import time


class ManualClock:
    """Stands still until advanced; starts at the real time unless told otherwise."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on."""
        self.now += seconds
