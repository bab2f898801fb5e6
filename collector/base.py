"""The Source contract: an async context manager whose batches() yields ReadingBatches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from meterguard.model import QUANTITY_INDEX, ReadingBatch


class Source(Protocol):
    """Where readings come from: a gateway, a broker subscription, a file."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def batches(self) -> AsyncIterator[ReadingBatch]:
        """Yield batches of readings until the source is closed."""
        ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """A batch and what to call once the series store has committed it.

    A source that can have its input sent again (an MQTT broker) acknowledges only in
    `on_committed`, so a crash before the commit loses nothing the broker accepted.
    """

    batch: ReadingBatch
    on_committed: Callable[[], None] | None = None


@runtime_checkable
class CommittingSource(Protocol):
    """A source whose input is acknowledged only after its readings are stored."""

    def deliveries(self) -> AsyncIterator[Delivery]:
        """Yield batches with their commit callbacks until the source is closed."""
        ...


def raise_dropped_cancel(task: asyncio.Task[Any] | None) -> None:
    """Raise the cancel `task` was sent if something on its way dropped it.

    Python 3.11's asyncio.wait_for, with which pymodbus awaits each answer, returns the
    answer and drops the cancel when the two come together; a task going on would then
    hold its service's stop forever.
    """
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def deliveries(source: Source) -> AsyncIterator[Delivery]:
    """Yield a source's batches with commit callbacks (None: the source needs none).

    A source that swallowed the cancel meant to stop its consumer raises it here instead
    of delivering (raise_dropped_cancel).
    """
    consumer = asyncio.current_task()
    if isinstance(source, CommittingSource):
        async for delivery in source.deliveries():
            raise_dropped_cancel(consumer)
            yield delivery
        return
    async for batch in source.batches():
        raise_dropped_cancel(consumer)
        yield Delivery(batch)


def batch_from_rows(rows: Sequence[tuple[float, int, dict[str, float], int]]) -> ReadingBatch:
    """Build a batch from (ts, slot, quantities, event mask) rows, for low-rate sources."""
    n = len(rows)
    nan = float("nan")
    # Python lists take single items faster than numpy arrays; convert once at the end.
    columns = [[nan] * n for _ in QUANTITY_INDEX]
    index = QUANTITY_INDEX
    for r, (_ts, _slot, values, _events) in enumerate(rows):
        for quantity, value in values.items():
            columns[index[quantity]][r] = value
    return ReadingBatch(
        ts=np.array([row[0] for row in rows], dtype=np.float64),
        slot=np.array([row[1] for row in rows], dtype=np.int32),
        values=np.array(columns, dtype=np.float64).reshape(len(index), n),
        events=np.array([row[3] for row in rows], dtype=np.uint32),
    )


def jittered_backoff(attempt: int, base: float, cap: float, rng: np.random.Generator) -> float:
    """Return the delay before retry `attempt` (0-based): exponential, capped, full jitter."""
    return float(rng.uniform(0.5, 1.0) * min(cap, base * 2.0**attempt))
