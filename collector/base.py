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
