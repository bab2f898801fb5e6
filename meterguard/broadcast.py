"""Alert and case events fanned out to live listeners (the SSE stream), resumable by id."""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from meterguard.model import AlertEvent
from meterguard.stores.records import CaseState


@dataclass(frozen=True, slots=True)
class NumberedEvent:
    """An alert event (or a case change) with the id a client quotes to resume after it."""

    id: str
    seq: int
    event: AlertEvent | CaseState


class ResyncNeeded:
    """Sent to a client whose last event id is unknown or too old: reload, then listen."""


class AlertBroadcaster:
    """Keeps the last events in a ring and wakes every listener on each new one."""

    def __init__(self, keep: int = 2000) -> None:
        # The epoch makes ids from an earlier process unmistakable after a restart.
        self.epoch = secrets.token_hex(4)
        self._ring: deque[NumberedEvent] = deque(maxlen=keep)
        self._seq = 0
        self._changed = asyncio.Event()
        self.listeners = 0

    def publish(self, event: AlertEvent | CaseState) -> NumberedEvent:
        """Give an event its id, keep it in the ring and wake the listeners."""
        self._seq += 1
        numbered = NumberedEvent(id=f"{self.epoch}-{self._seq}", seq=self._seq, event=event)
        self._ring.append(numbered)
        self._changed.set()
        self._changed = asyncio.Event()
        return numbered

    def recent(self) -> tuple[NumberedEvent, ...]:
        """Return the events the ring still holds, oldest first."""
        return tuple(self._ring)

    def _resume_point(self, last_event_id: str | None) -> int | None:
        """Return the seq to continue after, or None when the client must resync."""
        if not last_event_id:
            return self._seq
        epoch, _, seq_text = last_event_id.partition("-")
        if epoch != self.epoch or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if seq > self._seq or seq < oldest - 1:
            return None
        return seq

    async def listen(
        self, last_event_id: str | None = None
    ) -> AsyncIterator[NumberedEvent | ResyncNeeded]:
        """Yield events after last_event_id (or from now on), forever."""
        self.listeners += 1
        try:
            after = self._resume_point(last_event_id)
            if after is None:
                yield ResyncNeeded()
                after = self._seq
            while True:
                if self._ring and self._ring[0].seq > after + 1:
                    # This listener fell so far behind that the ring dropped events it
                    # never saw: it must reload rather than miss them silently.
                    yield ResyncNeeded()
                    after = self._ring[0].seq - 1
                pending = [e for e in self._ring if e.seq > after]
                for numbered in pending:
                    yield numbered
                    after = numbered.seq
                if not pending:
                    await self._changed.wait()
        finally:
            self.listeners -= 1
