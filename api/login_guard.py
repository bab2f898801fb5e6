"""Password-guessing guard: failed logins counted per name and per address, in memory."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from meterguard.settings import ApiSettings

log = logging.getLogger(__name__)

MAX_KEYS = 10_000
"""Names and addresses tracked at once; past this the least recently failed is forgotten."""

_Key = tuple[str, str]


class LoginRefusedError(Exception):
    """Too many recent failures for the name or the address: wait retry_after_s."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class Attempt:
    """The outcome of one admitted attempt: True, False, or None when it never finished."""

    succeeded: bool | None = None


class LoginGuard:
    """Refuses logins for a name or address after too many failures within a window."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        address_max_failures: int | None = None,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        # An address may try several names: by default it may fail four times as often.
        self.address_max_failures = (
            4 * max_failures if address_max_failures is None else address_max_failures
        )
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self.failures_total = 0
        self.refused_total = 0
        # Ordered by last failure, so expired and evicted keys are always at the front.
        self._failures: OrderedDict[_Key, deque[float]] = OrderedDict()
        # Attempts admitted but not yet answered: they count against the limit, or a burst
        # of parallel guesses would all pass the check before the first one failed.
        self._in_flight: dict[_Key, int] = {}

    @classmethod
    def from_settings(
        cls, api: ApiSettings, clock: Callable[[], float] = time.monotonic
    ) -> LoginGuard:
        """Build the guard that [api] login_max_failures and login_window_s describe."""
        return cls(
            api.login_max_failures,
            api.login_window_s,
            address_max_failures=api.login_address_max_failures,
            clock=clock,
        )

    @property
    def enabled(self) -> bool:
        """Whether failures lead to refusals (login_max_failures > 0)."""
        return self.max_failures > 0

    @property
    def tracked(self) -> int:
        """Names and addresses with failures held in memory."""
        return len(self._failures)

    @contextmanager
    def attempt(self, name: str, address: str | None) -> Iterator[Attempt]:
        """Admit one login attempt or raise LoginRefusedError; record its outcome on exit."""
        keys = self._keys(name, address)
        now = self.clock()
        self._prune(now)
        waits = [w for w in (self._wait(key, now) for key in keys) if w is not None]
        if waits:
            self.refused_total += 1
            raise LoginRefusedError(max(waits))
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        outcome = Attempt()
        try:
            yield outcome
        finally:
            for key in keys:
                left = self._in_flight[key] - 1
                if left:
                    self._in_flight[key] = left
                else:
                    del self._in_flight[key]
            if outcome.succeeded is False:
                self.failures_total += 1
                for key in keys:
                    self._record(key, self.clock())
            elif outcome.succeeded and keys:
                # The account holder is back: their typos no longer count. The address
                # keeps its failures, since it may be guessing other names too.
                self._failures.pop(keys[0], None)

    def _keys(self, name: str, address: str | None) -> list[_Key]:
        if not self.enabled:
            return []
        keys = [("name", name.casefold())]
        # Behind a proxy or NAT that hides the clients, one address is everybody: 0 there.
        if address is not None and self.address_max_failures > 0:
            keys.append(("address", address))
        return keys

    def _limit(self, key: _Key) -> int:
        return self.address_max_failures if key[0] == "address" else self.max_failures

    def _recent(self, key: _Key, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def _wait(self, key: _Key, now: float) -> int | None:
        """Whole seconds until the key may try again, or None if it may now."""
        times = self._recent(key, now)
        over = len(times) + self._in_flight.get(key, 0) - self._limit(key)
        if over < 0:
            return None
        if over >= len(times):
            return 1  # locked only by attempts still being checked; they end shortly
        # Once this many of the oldest failures leave the window, one more try is allowed.
        return max(1, math.ceil(times[over] + self.window_s - now))

    def _record(self, key: _Key, now: float) -> None:
        limit = self._limit(key)
        times = self._recent(key, now)
        if not times:
            # Only the newest `limit` failures can ever decide a refusal.
            times = self._failures[key] = deque(maxlen=limit)
        was_locked = len(times) >= limit
        times.append(now)
        self._failures.move_to_end(key)
        if not was_locked and len(times) >= limit:
            log.warning(
                "login locked for %s %r: %d failures within %g s",
                key[0],
                key[1],
                limit,
                self.window_s,
            )
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def _prune(self, now: float) -> None:
        """Forget keys whose newest failure has left the window (oldest first, so cheap)."""
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times and times[-1] > now - self.window_s:
                return
            del self._failures[key]


def guard_of(app: FastAPI, api: ApiSettings) -> LoginGuard:
    """Return the app's guard (app.state.login_guard), made from the settings on first use."""
    guard = getattr(app.state, "login_guard", None)
    if not isinstance(guard, LoginGuard):
        guard = LoginGuard.from_settings(api)
        app.state.login_guard = guard
    return guard
