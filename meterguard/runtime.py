"""What a running meterguard shares between its rooms: settings, fleet, stores, status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from meterguard.broadcast import AlertBroadcaster
from meterguard.latest import LatestReadings
from meterguard.model import MeterRegistry
from meterguard.settings import Settings
from meterguard.status import StatusBoard
from meterguard.stores import AlertStore, SeriesStore
from meterguard.stores.factory import open_stores


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


@dataclass(slots=True)
class Runtime:
    """The open stores and the fleet, handed to the engine pipeline and the API alike."""

    settings: Settings
    registry: MeterRegistry
    series: SeriesStore
    alerts: AlertStore
    status: StatusBoard = field(default_factory=StatusBoard)
    counters: Counters = field(default_factory=Counters)
    broadcaster: AlertBroadcaster = field(default_factory=AlertBroadcaster)
    #: Live figures read at scrape time (queue depths, write buffers), by metric name.
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    latest: LatestReadings = field(init=False)

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

    async def close(self) -> None:
        """Close both stores."""
        await self.series.close()
        await self.alerts.close()
