"""Per-meter collector status, shared by the sources (who write it) and the API (who reads it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class MeterStatus:
    """How polling one meter is going."""

    source: str
    last_ok: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    errors: int = 0
    consecutive_failures: int = 0
    readings: int = 0

    @property
    def online(self) -> bool:
        """True while the latest attempt succeeded."""
        return self.last_ok is not None and self.consecutive_failures == 0

    def as_dict(self) -> dict[str, Any]:
        """Return the status as plain data for the API."""
        return {**asdict(self), "online": self.online}


class StatusBoard:
    """The status of every polled meter, by meter id."""

    def __init__(self) -> None:
        self._meters: dict[str, MeterStatus] = {}

    def meter(self, meter_id: str, source: str) -> MeterStatus:
        """Return (creating on first use) the status of a meter polled by a source."""
        status = self._meters.get(meter_id)
        if status is None:
            status = self._meters[meter_id] = MeterStatus(source=source)
        return status

    def get(self, meter_id: str) -> MeterStatus | None:
        """Return a meter's status, or None if no source polls it."""
        return self._meters.get(meter_id)

    def all(self) -> list[MeterStatus]:
        """Return every meter's status."""
        return list(self._meters.values())

    def summary(self) -> dict[str, int]:
        """Return counts of polled, online and failing meters."""
        online = sum(1 for s in self._meters.values() if s.online)
        return {
            "polled": len(self._meters),
            "online": online,
            "failing": len(self._meters) - online,
        }
