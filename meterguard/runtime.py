"""What a running meterguard shares between its rooms: settings, fleet, stores, status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from meterguard.alerting import AlertService
from meterguard.broadcast import AlertBroadcaster
from meterguard.clock import Clock, wall_time
from meterguard.latest import LatestReadings
from meterguard.model import MeterRegistry
from meterguard.settings import Settings
from meterguard.status import StatusBoard
from meterguard.stores import SeriesStore
from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.factory import open_photo_files, open_stores
from meterguard.stores.photofiles import PhotoFiles
from meterguard.stores.repositories import (
    AlertRepository,
    CaseRepository,
    PhotoRepository,
    UserRepository,
)
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
    #: Alert events a notifier refused to take (each logged; the others still got them).
    notify_failures: int = 0


@dataclass(slots=True)
class EngineActivity:
    """When the engine last took a batch, for the health summary: is data flowing, how late."""

    #: Wall clock (epoch s) when the engine last took a batch with readings.
    last_batch_at: float | None = None
    #: The newest data time (epoch s) of any reading the engine has judged.
    data_time: float | None = None
    #: Working days the calendar took as days of rest from the customers' consumption.
    rest_days_found: list[dt.date] = field(default_factory=list)

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
    #: The alert database; the rooms use the repositories over it (alerts, cases, users).
    alert_db: AlertDatabase
    alerts: AlertRepository = field(init=False)
    cases: CaseRepository = field(init=False)
    users: UserRepository = field(init=False)
    photos: PhotoRepository = field(init=False)
    #: The photos' bytes, one file per SHA-256 ([storage] photo_dir).
    photo_files: PhotoFiles = field(init=False)
    status: StatusBoard = field(default_factory=StatusBoard)
    counters: Counters = field(default_factory=Counters)
    engine_activity: EngineActivity = field(default_factory=EngineActivity)
    broadcaster: AlertBroadcaster = field(default_factory=AlertBroadcaster)
    #: Live figures read at scrape time (queue depths, write buffers), by metric name.
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    latest: LatestReadings = field(init=False)
    #: The one way alert events and case changes go out (meterguard/alerting.py).
    alerting: AlertService = field(init=False)
    #: What the reading checks blanked and refused (meterguard/validation.py).
    validation: ValidationReport = field(default_factory=ValidationReport)
    #: Photo uploads refused, by reason (too_large, not_an_image, unsupported_type,
    #: type_mismatch).
    photos_refused: dict[str, int] = field(default_factory=dict)
    #: Per meter id, the detectors that cannot judge it from what it sends, and why (set by
    #: the service that runs the engine; none without one).
    silent_detectors: Callable[[str], dict[str, str]] | None = None

    def __post_init__(self) -> None:
        self.latest = LatestReadings(len(self.registry))
        self.alerts = self.alert_db.alerts
        self.cases = self.alert_db.cases
        self.users = self.alert_db.users
        self.photos = self.alert_db.photos
        self.photo_files = open_photo_files(self.settings.storage)
        self.alerting = AlertService(self.alerts, self.cases, self.broadcaster, self.counters)

    @classmethod
    def open(cls, settings: Settings, clock: Clock = wall_time) -> Runtime:
        """Open the stores [storage] names (the alert database migrates on first use).

        `clock` is the time the alert database stamps records with and judges tokens by.
        """
        registry = MeterRegistry(settings.all_meters())
        series, alert_db, gauges = open_stores(settings.storage, registry, clock)
        return cls(
            settings=settings, registry=registry, series=series, alert_db=alert_db, gauges=gauges
        )

    async def close(self) -> None:
        """Close both stores."""
        await self.series.close()
        await self.alert_db.close()
