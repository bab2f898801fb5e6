"""Collector status, per meter and per source: the sources write it, the API reads it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from meterguard.errors import ConfigError


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


class DeadLetterView(Protocol):
    """What the board reads of a payload a source could not use."""

    @property
    def at(self) -> float: ...
    @property
    def topic(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """A source's own counters and dead letters, held by reference and read when asked."""

    name: str
    kind: str
    counters: Mapping[str, int]
    dead_letters: Sequence[DeadLetterView] | None

    def counts(self) -> dict[str, int]:
        """Return a copy of the counters as they stand now."""
        # One C-level copy: the MQTT client thread may add a key meanwhile, which would
        # break a Python-level iteration over the live counter.
        return dict(self.counters)

    def letters(self) -> list[DeadLetterView]:
        """Return a copy of the dead letters kept now, oldest first (empty if none kept)."""
        return [] if self.dead_letters is None else list(self.dead_letters)


class DuplicateSourceError(ConfigError, ValueError):
    """Two sources on one board share a name; their counters could not be told apart."""

    def __init__(self, name: str) -> None:
        super().__init__(
            "sources",
            [("name", f"two sources are named {name!r}; give each source its own name")],
        )
        self.name = name


class StatusBoard:
    """The status of every polled meter, by meter id, and every source's own counters."""

    def __init__(self) -> None:
        self._meters: dict[str, MeterStatus] = {}
        self._sources: dict[str, SourceEntry] = {}

    def register_source(
        self,
        name: str,
        counters: Mapping[str, int],
        dead_letters: Sequence[DeadLetterView] | None = None,
        *,
        kind: str,
    ) -> None:
        """Make a source's counters (and dead letters) readable; a taken name is refused.

        The board keeps the objects themselves, so what it reports is always current.
        Loading a config already refuses two sources of one name; this guards sources
        built in code, where a second one would hide the first one's counters.
        """
        if name in self._sources:
            raise DuplicateSourceError(name)
        self._sources[name] = SourceEntry(name, kind, counters, dead_letters)

    def sources(self) -> list[SourceEntry]:
        """Return the registered sources, by name."""
        return [self._sources[name] for name in sorted(self._sources)]

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

    def summary(self, source: str | None = None) -> dict[str, int]:
        """Return counts of polled, online and failing meters (of one source if named)."""
        meters = [s for s in self._meters.values() if source is None or s.source == source]
        online = sum(1 for s in meters if s.online)
        return {"polled": len(meters), "online": online, "failing": len(meters) - online}
