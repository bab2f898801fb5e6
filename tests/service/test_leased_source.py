"""A leased source stops polling before its lease can have run out, and waits in standby."""

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import pytest

from meterguard.model import ReadingBatch
from meterguard.status import SourceHealth
from service.leasing import SAFETY_MARGIN_S, LeasedSource, LeaseLostError
from tests.conftest import make_batch


class _Ticker:
    """A source that delivers a one-row batch every 50 ms and records when."""

    name = "ticker"

    def __init__(self) -> None:
        self.delivered_at: list[float] = []
        self.open = False

    async def __aenter__(self) -> Self:
        self.open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.open = False

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        while True:
            await asyncio.sleep(0.05)
            self.delivered_at.append(time.monotonic())
            yield make_batch([(time.time(), 0, {"v1": 230.0})])


class _Leases:
    """Leases that answer the first `answers` claims as told, then never answer again."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.claims: list[float] = []
        self.released: list[str] = []

    async def claim(self, resource: str, owner: str, ttl_s: float) -> bool:
        self.claims.append(time.monotonic())
        if not self.answers:
            await asyncio.Event().wait()  # the database went out of reach
        return self.answers.pop(0)

    async def release(self, resource: str, owner: str) -> bool:
        self.released.append(resource)
        return True


async def test_polling_stops_before_an_unrenewed_lease_expires() -> None:
    ticker, leases = _Ticker(), _Leases([True])
    source = LeasedSource(ticker, leases, "modbus://gw:502", "me", 3.0, SourceHealth())
    async with source:
        with pytest.raises(LeaseLostError):
            async for _ in source.deliveries():
                pass
        stopped = time.monotonic()
        assert not ticker.open
    taken = leases.claims[0]
    # Polled while the lease lasted, and stopped within the safety margin (half of it left
    # for a loaded machine's late wake-ups, which the margin exists for).
    assert ticker.delivered_at[0] - taken < 1.0
    assert max(ticker.delivered_at) <= taken + 3.0 - SAFETY_MARGIN_S / 2
    assert stopped - taken < 3.0
    await asyncio.sleep(0.2)
    assert max(ticker.delivered_at) < stopped


async def test_a_held_lease_keeps_the_source_in_standby_until_it_is_free() -> None:
    ticker, leases = _Ticker(), _Leases([False, False, True, True, True, True])
    health = SourceHealth()
    source = LeasedSource(ticker, leases, "modbus://gw:502", "me", 3.0, health)
    async with source:
        stream = source.deliveries()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)
        assert (health.state, ticker.open, first.done()) == ("standby", False, False)
        await asyncio.wait_for(first, 3.0)  # the third claim, a second later, takes it
        assert health.state != "standby"
        assert ticker.open
        assert len(leases.claims) == 3
        await stream.aclose()
    # A clean stop gives the lease up for the next process.
    assert leases.released == ["modbus://gw:502"]
