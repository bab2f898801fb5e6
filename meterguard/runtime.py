"""What a running meterguard shares between its rooms: settings, fleet, stores, status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from meterguard.broadcast import AlertBroadcaster
from meterguard.latest import LatestReadings
from meterguard.model import Alert, AlertEvent, AlertEventType, MeterRegistry
from meterguard.settings import Settings
from meterguard.status import StatusBoard
from meterguard.stores import AlertStore, SeriesStore
from meterguard.stores.factory import open_stores
from meterguard.validation import ValidationReport


@dataclass(slots=True)
class Counters:
    """Running totals an operator checks first when something looks off."""

    readings_in: int = 0
    batches_in: int = 0
    alert_events: int = 0
    alerts_opened: int = 0
    alerts_cleared: int = 0
    #: Writes a store refused (each retried until taken).
    store_errors: int = 0
    #: Alerts operators cleared by hand.
    alerts_cleared_manually: int = 0


@dataclass(slots=True)
class EngineActivity:
    """When the engine last took a batch, for the health summary: is data flowing, how late."""

    #: Wall clock (epoch s) when the engine last took a batch with readings.
    last_batch_at: float | None = None
    #: The newest data time (epoch s) of any reading the engine has judged.
    data_time: float | None = None

    def took(self, newest_ts: float, now: float) -> None:
        """Record a batch whose newest reading is `newest_ts`, taken at wall time `now`."""
        self.last_batch_at = now
        if self.data_time is None or newest_ts > self.data_time:
            self.data_time = newest_ts


@dataclass(slots=True)
class Runtime:
    """The open stores and the fleet, handed to the engine pipeline and the API alike."""

    settings: Settings
    registry: MeterRegistry
    series: SeriesStore
    alerts: AlertStore
    status: StatusBoard = field(default_factory=StatusBoard)
    counters: Counters = field(default_factory=Counters)
    engine_activity: EngineActivity = field(default_factory=EngineActivity)
    broadcaster: AlertBroadcaster = field(default_factory=AlertBroadcaster)
    #: Live figures read at scrape time (queue depths, write buffers), by metric name.
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    latest: LatestReadings = field(init=False)
    #: What the reading checks blanked and refused (meterguard/validation.py).
    validation: ValidationReport = field(default_factory=ValidationReport)
    #: Called with the clear event of every alert an operator clears by hand: the engine
    #: forgets the incident (a condition that still holds raises a new alert), notifiers tell.
    manual_clear_hooks: list[Callable[[AlertEvent], None]] = field(default_factory=list)
    #: Per meter id, the detectors that cannot judge it from what it sends, and why (set by
    #: the service that runs the engine; none without one).
    silent_detectors: Callable[[str], dict[str, str]] | None = None
    #: Held from reading an alert's case fields to publishing them, so the last case event
    #: of an alert always carries its latest state.
    case_announce_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.latest = LatestReadings(len(self.registry))

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Open the stores [storage] names (the alert database migrates on first use)."""
        registry = MeterRegistry(settings.all_meters())
        series, alerts, gauges = open_stores(settings.storage, registry)
        return cls(
            settings=settings, registry=registry, series=series, alerts=alerts, gauges=gauges
        )

    def announce_manual_clear(self, alert: Alert) -> None:
        """Tell the live stream and the hooks that an operator cleared an alert."""
        if alert.end is None:
            raise ValueError(f"alert {alert.id} has not ended")
        event = AlertEvent(type=AlertEventType.CLEAR, ts=alert.end, alert=alert)
        self.counters.alerts_cleared_manually += 1
        self.broadcaster.publish(event)
        for hook in self.manual_clear_hooks:
            hook(event)

    async def close(self) -> None:
        """Close both stores."""
        await self.series.close()
        await self.alerts.close()
