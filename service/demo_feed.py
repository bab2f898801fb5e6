"""The demo's head-end: a week of the fleet's history at once, then a few meters live.

A utility's head-end system hands over what its smart meters sent, events included; the
demo's stands in for one. It first delivers the whole fleet's history (days of data in
seconds, so that kinds that need days of data show at once) and then reads its own
meters live, events and all; the Modbus sources wait for the history before they deliver,
so that every meter's readings reach the engine in time order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Self

import numpy as np

from collector.base import Source, batch_from_rows
from meterguard.model import EventArray, MeterRegistry, ReadingBatch, encode_events
from simulators.showcase import Showcase, history, live_meters

log = logging.getLogger(__name__)

#: Seconds between the head-end's live deliveries.
HEAD_END_INTERVAL_S = 2.0


class HeadEndFeed:
    """A source: the fleet's history, then the head-end's own meters every few seconds."""

    name = "head-end"

    def __init__(self, show: Showcase, registry: MeterRegistry) -> None:
        self._show = show
        self._registry = registry
        self._meters = [live_meters(show)[meter_id] for meter_id in show.head_end]
        #: Set once every history batch is handed over (kept across restarts).
        self.history_done = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        """Yield the history once, then the head-end's meters until the source is closed."""
        if not self.history_done.is_set():
            began = time.monotonic()
            rows = 0
            for batch in self._history():
                rows += len(batch)
                yield batch
                await asyncio.sleep(0)  # the API answers meanwhile
            self.history_done.set()
            days = (self._show.live_start_s - self._show.history_start_s) / 86400.0
            log.info(
                "history: %.1f days, %d readings handed over in %.1f s",
                days,
                rows,
                time.monotonic() - began,
            )
            print(f"history of {days:.1f} days played ({rows} readings); live now", flush=True)
        while True:
            now = time.time()
            rows_now = [
                (now, self._registry.slot(m.meter.id), m.read(now), encode_events(m.events(now))[0])
                for m in self._meters
                if m.online(now)
            ]
            if rows_now:
                yield batch_from_rows(rows_now)
            await asyncio.sleep(HEAD_END_INTERVAL_S)

    def _history(self) -> Iterator[ReadingBatch]:
        """Turn the show's history chunks into batches in time order."""
        slot_of = self._registry.slot
        for chunk in history(self._show):
            slots = np.array([slot_of(meter_id) for meter_id in chunk.meter_ids], dtype=np.int32)
            rows, cols = np.nonzero(chunk.present)
            events: EventArray = np.zeros(rows.size, dtype=np.uint32)
            if chunk.events:
                for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
                    names = chunk.events.get((r, chunk.meter_ids[c]))
                    if names:
                        events[k] = encode_events(names)[0]
            yield ReadingBatch(
                ts=chunk.ts[rows],
                slot=slots[cols],
                values=np.ascontiguousarray(chunk.values[rows, cols, :].T),
                events=events,
            )


class AfterHistory:
    """A source that delivers nothing until the history is handed over, then its own."""

    def __init__(self, inner: Source, ready: asyncio.Event) -> None:
        self._inner = inner
        self._ready = ready
        self.name = inner.name

    async def __aenter__(self) -> Self:
        # Connect only then: while the history is made, the event loop is busy and a
        # connection attempt would time out.
        await self._ready.wait()
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        """Yield the inner source's batches (the history is handed over by then)."""
        async for batch in self._inner.batches():
            yield batch
