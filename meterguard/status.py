"""Collector status, per meter and per source: the sources write it, the API reads it."""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from meterguard.errors import ConfigError


class FailureKind(StrEnum):
    """How reading a meter failed, in the same words for every protocol.

    They key each source's counters, each meter's `failures` and /metrics alike.
    """

    #: Asked, and no answer came in time.
    TIMEOUT = "timeout"
    #: No connection: refused, reset, lost, or no route to the gateway, meter or broker.
    UNREACHABLE = "unreachable"
    #: The device answered with an exception (its code is kept with the failure).
    DEVICE_EXCEPTION = "device_exception"
    #: A gateway answered that the device behind it could not be reached (Modbus 10, 11).
    GATEWAY = "gateway"
    #: An answer or payload that is not what its protocol or format says (a wrong
    #: register count, a payload without its time, ...).
    MALFORMED = "malformed"
    #: The decoder itself failed on an answer or payload, in a way it did not foresee.
    DECODE_ERROR = "decode_error"
    #: A device that publishes on its own went quiet for several of its intervals.
    SILENT = "silent"


class ReadFailedError(Exception):
    """A read of a meter that failed: its kind, a readable detail, the device's code if any."""

    def __init__(self, kind: FailureKind, detail: str, code: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.code = code


def failure_count(counters: Mapping[str, int]) -> int:
    """Return the failed reads among a source's counters (every kind together)."""
    return sum(counters.get(kind, 0) for kind in FailureKind)


@dataclass(slots=True)
class MeterStatus:
    """How reading one meter is going, kept alike by every source."""

    source: str
    last_ok: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    #: The kind of the last failure (a FailureKind value), and the device's exception
    #: code when it sent one.
    last_failure: str | None = None
    last_exception_code: int | None = None
    errors: int = 0
    consecutive_failures: int = 0
    readings: int = 0
    #: Failed reads by kind (FailureKind values), since start.
    failures: dict[str, int] = field(default_factory=dict)
    #: Registers whose answers no meter of this kind can give (a NaN float, a negative
    #: current, no voltage while current flows), by quantity: usually a wrong profile,
    #: register type or word order. Checked on the first polls after start-up.
    register_problems: dict[str, str] = field(default_factory=dict)

    @property
    def online(self) -> bool:
        """True while the latest attempt succeeded."""
        return self.last_ok is not None and self.consecutive_failures == 0

    def as_dict(self) -> dict[str, Any]:
        """Return the status as plain data for the API."""
        return {**asdict(self), "online": self.online}

    def succeeded(self, at: float, readings: int = 1) -> int:
        """Record readings taken at `at`; return the failures in a row they end (0: none)."""
        ended = self.consecutive_failures
        self.consecutive_failures = 0
        self.last_ok = at
        self.readings += readings
        return ended

    def failed(self, failure: ReadFailedError, at: float) -> bool:
        """Record a failed read; return True when it is the first of a spell (worth a log)."""
        self.errors += 1
        self.consecutive_failures += 1
        kind = failure.kind.value
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.last_error = str(failure)
        self.last_error_at = at
        self.last_failure = kind
        self.last_exception_code = failure.code
        return self.consecutive_failures == 1


def record_failure(
    status: MeterStatus, counters: MutableMapping[str, int], failure: ReadFailedError, at: float
) -> bool:
    """Count a failed read for its meter and its source; return True on the first of a spell."""
    counters[failure.kind.value] = counters.get(failure.kind.value, 0) + 1
    return status.failed(failure, at)


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


#: What a source is doing: `starting` (not run yet, or connecting for the first time),
#: `running`, `unreachable` (running, but its broker or gateway cannot be reached),
#: `failed` (it raised; restarted after a backoff) or `stopped`.
SourceState = Literal["starting", "running", "standby", "unreachable", "failed", "stopped"]


@dataclass(slots=True)
class SourceHealth:
    """Whether a source runs and reaches its upstream; the service and the source write it."""

    #: Set by the service: the source is inside its context and delivering.
    running: bool = False
    #: Set by the service: the source raised and waits for its restart.
    failed: bool = False
    stopped: bool = False
    #: Set by a leased source: another process holds its gateway's lease; this one waits
    #: to take over (not a fault).
    standby: bool = False
    #: Set by the source: its broker or gateway answers (None: not known, or none).
    reachable: bool | None = None
    #: Why the upstream cannot be reached, as the source last saw it.
    unreachable_reason: str | None = None
    #: Restarts after a failure since the service started.
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None

    @property
    def state(self) -> SourceState:
        """Return the one word an operator reads first."""
        if self.stopped:
            return "stopped"
        if self.failed:
            return "failed"
        if self.standby:
            return "standby"
        if self.reachable is False:
            return "unreachable"
        return "running" if self.running else "starting"

    @property
    def degraded(self) -> bool:
        """True while the source cannot deliver: failed, or its upstream is out of reach."""
        return self.state in ("failed", "unreachable")

    def upstream(self, reachable: bool, reason: str | None = None) -> None:
        """Record whether the broker or gateway answers (called by the source)."""
        self.reachable = reachable
        self.unreachable_reason = None if reachable else reason

    def failure(self, error: str) -> None:
        """Record that the source raised (called by the service)."""
        self.failed = True
        self.running = False
        self.last_error = error
        self.last_error_at = time.time()

    @property
    def reason(self) -> str | None:
        """Return why the source is unreachable or failed (None while it is neither)."""
        if self.state == "unreachable":
            return self.unreachable_reason
        if self.state == "failed":
            return self.last_error
        return None


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """A source's own counters and dead letters, held by reference and read when asked."""

    name: str
    kind: str
    counters: Mapping[str, int]
    dead_letters: Sequence[DeadLetterView] | None
    health: SourceHealth = field(default_factory=SourceHealth)

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
        self._health: dict[str, SourceHealth] = {}

    def register_source(
        self,
        name: str,
        counters: Mapping[str, int],
        dead_letters: Sequence[DeadLetterView] | None = None,
        *,
        kind: str,
    ) -> SourceHealth:
        """Make a source's counters (and dead letters) readable; a taken name is refused.

        The board keeps the objects themselves, so what it reports is always current.
        Loading a config already refuses two sources of one name; this guards sources
        built in code, where a second one would hide the first one's counters. Returns
        the source's health, which the source updates when its upstream comes and goes.
        """
        if name in self._sources:
            raise DuplicateSourceError(name)
        entry = SourceEntry(name, kind, counters, dead_letters, self.health(name))
        self._sources[name] = entry
        return entry.health

    def health(self, name: str) -> SourceHealth:
        """Return (creating on first use) the health of a source, registered or not."""
        health = self._health.get(name)
        if health is None:
            health = self._health[name] = SourceHealth()
        return health

    def healths(self) -> dict[str, SourceHealth]:
        """Return the health of every source the board knows, by name."""
        return dict(sorted(self._health.items()))

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
