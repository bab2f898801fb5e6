"""The stores: the series store protocol here, the alert repositories in repositories.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from meterguard.model import QUANTITIES, FloatArray, ReadingBatch


@dataclass(frozen=True, slots=True)
class Series:
    """A meter's quantities over a window: one timestamp column and one column per field."""

    meter: str
    ts: FloatArray
    values: dict[str, FloatArray]


def check_query(fields: Sequence[str], points: int | None) -> None:
    """Refuse a series query every store would refuse: unknown quantities, points < 1."""
    unknown = [f for f in fields if f not in QUANTITIES]
    if unknown:
        raise ValueError(f"unknown quantities: {', '.join(unknown)}")
    if points is not None and points < 1:
        raise ValueError("points must be at least 1")


class SeriesStore(Protocol):
    """Keeps the readings; the embedded SQLite store and InfluxDB both satisfy it."""

    async def write(self, batch: ReadingBatch) -> None:
        """Store every row of a batch."""

    async def query(
        self,
        meter: str,
        start: float,
        end: float,
        fields: Sequence[str],
        points: int | None = None,
    ) -> Series:
        """Return a meter's fields between start and end (epoch seconds, inclusive).

        With `points`, readings are averaged into at most that many equal time buckets
        aligned to multiples of the bucket width; each bucket is stamped with its start.
        """

    async def ping(self) -> None:
        """Ask the store a trivial question; raise StoreUnavailableError if it does not answer."""

    async def close(self) -> None:
        """Flush and release the store."""
