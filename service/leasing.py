"""Gateway leases: a polled source reads only while its process holds the gateway's lease.

Several processes may run the same [[sources]] against one shared alert database; each
Modbus gateway (or DLMS source) is then polled by exactly one of them. The holder renews
its lease every third of its time to live; the others try to take it as often, and do so
once it has expired, so a dead holder's gateways move within about 1 1/3 of the lease time.

A holder that cannot renew (the database out of reach, the lease taken) stops polling
before its lease can have expired by the database's clock: it counts from the moment it
sent the renewal, which is before the database stamped it, so the old holder has always
stopped by the time a new one may start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Protocol, Self

from collector.base import Delivery, Source, deliveries
from meterguard.errors import MeterguardError
from meterguard.model import ReadingBatch
from meterguard.status import SourceHealth

log = logging.getLogger(__name__)

#: Stop this long before the lease could expire: what an event loop's late wake-up may
#: cost, so that "stopped before expiry" holds on a busy machine too.
SAFETY_MARGIN_S = 1.0


class LeaseStore(Protocol):
    """Where leases are kept (the alert database's lease repository)."""

    async def claim(self, resource: str, owner: str, ttl_s: float) -> bool:
        """Take or renew a lease; False while another owner holds it."""
        ...

    async def release(self, resource: str, owner: str) -> bool:
        """Give a lease up at once."""
        ...


class LeaseLostError(MeterguardError):
    """The lease could not be renewed in time: polling stopped, the service restarts it."""


def default_owner() -> str:
    """Name this process in the leases: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeasedSource:
    """A source that delivers only while its process holds the lease named `key`."""

    def __init__(
        self,
        source: Source,
        leases: LeaseStore,
        key: str,
        owner: str,
        ttl_s: float,
        health: SourceHealth,
    ) -> None:
        if ttl_s <= 2 * SAFETY_MARGIN_S:
            raise ValueError(f"a lease time of {ttl_s} s leaves no time to poll")
        self.name = source.name
        self.source = source
        self.leases = leases
        self.key = key
        self.owner = owner
        self.ttl_s = ttl_s
        self.health = health
        self._entered = False
        self._held = False
        #: Leases taken since the process started (a takeover counts once).
        self.acquisitions = 0

    async def __aenter__(self) -> Self:
        # The gateway is connected only once the lease is held (in deliveries), so that
        # a process waiting in standby can be stopped at once.
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._close_source()
        finally:
            await self._release()

    async def _close_source(self) -> None:
        if self._entered:
            self._entered = False
            await self.source.__aexit__(None, None, None)

    async def _release(self) -> None:
        if not self._held:
            return
        self._held = False
        # A clean stop hands the gateway over at once; if the database cannot be reached,
        # the lease simply runs out.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leases.release(self.key, self.owner), SAFETY_MARGIN_S)

    async def _acquire(self) -> float:
        """Wait until this process holds the lease; return the monotonic time it lasts to."""
        waiting_logged = False
        while True:
            sent = time.monotonic()
            if await self.leases.claim(self.key, self.owner, self.ttl_s):
                self._held = True
                self.acquisitions += 1
                self.health.standby = False
                log.info("source %s: lease of %s taken by %s", self.name, self.key, self.owner)
                return sent + self.ttl_s - SAFETY_MARGIN_S
            self.health.standby = True
            if not waiting_logged:
                log.info(
                    "source %s: %s is polled by another process; standing by", self.name, self.key
                )
                waiting_logged = True
            await asyncio.sleep(self.ttl_s / 3)

    async def _keep(self, valid_until: float) -> None:
        """Renew the lease every third of its time; return once it may have run out."""
        while True:
            renew_at = min(valid_until, time.monotonic() + self.ttl_s / 3)
            await asyncio.sleep(max(0.0, renew_at - time.monotonic()))
            if time.monotonic() >= valid_until:
                return
            sent = time.monotonic()
            try:
                renewed = await asyncio.wait_for(
                    self.leases.claim(self.key, self.owner, self.ttl_s),
                    max(0.0, valid_until - sent),
                )
            except TimeoutError:
                return
            except Exception as exc:  # the database failed: keep polling while the lease lasts
                log.warning(
                    "source %s: renewing the lease of %s failed: %s", self.name, self.key, exc
                )
                continue
            if not renewed:
                return  # taken by another: only after it had expired, so stop at once
            valid_until = sent + self.ttl_s - SAFETY_MARGIN_S

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        """Yield the source's batches while the lease is held (without commit callbacks)."""
        async for delivery in self.deliveries():
            yield delivery.batch

    async def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """Take the lease, then yield the source's deliveries until it is lost or given up."""
        valid_until = await self._acquire()
        keeper = asyncio.ensure_future(self._keep(valid_until))
        stream: AsyncIterator[Delivery] | None = None
        try:
            await self.source.__aenter__()
            self._entered = True
            stream = aiter(deliveries(self.source))
            while True:
                step = asyncio.ensure_future(anext(stream))
                await asyncio.wait({step, keeper}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    # The lease may run out: stop polling now, before another can start.
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    await self._close_source()
                    self._held = False
                    raise LeaseLostError(f"the lease of {self.key} could not be renewed in time")
                try:
                    delivery = step.result()
                except StopAsyncIteration:
                    return
                yield delivery
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if stream is not None and hasattr(stream, "aclose"):
                with contextlib.suppress(Exception):
                    await stream.aclose()
