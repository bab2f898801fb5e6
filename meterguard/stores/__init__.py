"""Store protocols: where series and alerts go. Embedded SQLite implementations live here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from meterguard.model import Alert, AlertEvent, AlertKind, FloatArray, ReadingBatch


@dataclass(frozen=True, slots=True)
class Series:
    """A meter's quantities over a window: one timestamp column and one column per field."""

    meter: str
    ts: FloatArray
    values: dict[str, FloatArray]


class SeriesStore(Protocol):
    """Keeps the readings; the embedded SQLite store and InfluxDB both satisfy it."""

    async def write(self, batch: ReadingBatch) -> None:
        """Store every row of a batch."""

    async def query(self, meter: str, start: float, end: float, fields: Sequence[str]) -> Series:
        """Return a meter's fields between start and end (epoch seconds, inclusive)."""

    async def close(self) -> None:
        """Flush and release the store."""


class AlertStore(Protocol):
    """Keeps alerts and their history; SQLite embedded, PostgreSQL in production."""

    async def apply(self, event: AlertEvent) -> None:
        """Record an open, update or clear event."""

    async def get(self, alert_id: str) -> Alert:
        """Return one alert; AlertNotFoundError when there is none."""

    async def list(
        self,
        *,
        active: bool | None = None,
        meter: str | None = None,
        kind: AlertKind | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Return alerts, newest start first, filtered as asked."""

    async def close(self) -> None:
        """Release the store."""
