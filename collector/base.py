"""The Source contract: an async context manager whose batches() yields ReadingBatches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol, Self

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


def batch_from_rows(rows: Sequence[tuple[float, int, dict[str, float], int]]) -> ReadingBatch:
    """Build a batch from (ts, slot, quantities, event mask) rows, for low-rate sources."""
    batch = ReadingBatch.empty(len(rows))
    for r, (ts, slot, values, events) in enumerate(rows):
        batch.ts[r] = ts
        batch.slot[r] = slot
        batch.events[r] = events
        for quantity, value in values.items():
            batch.values[QUANTITY_INDEX[quantity], r] = value
    return batch


def jittered_backoff(attempt: int, base: float, cap: float, rng: np.random.Generator) -> float:
    """Return the delay before retry `attempt` (0-based): exponential, capped, full jitter."""
    return float(rng.uniform(0.5, 1.0) * min(cap, base * 2.0**attempt))
