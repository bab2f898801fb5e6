"""Build the configured series and alert stores from the [storage] settings."""

from __future__ import annotations

from collections.abc import Callable

from meterguard.clock import Clock, wall_time
from meterguard.model import MeterRegistry
from meterguard.stores import SeriesStore
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from meterguard.stores.config import StorageSettings
from meterguard.stores.photofiles import PhotoFiles


def alert_db_url(storage: StorageSettings) -> str:
    """Return the alert database URL: the configured one, or the SQLite file in data_dir."""
    if storage.alert_db_url:
        return storage.alert_db_url
    storage.data_dir.mkdir(parents=True, exist_ok=True)
    return sqlite_url(storage.data_dir / "alertdb.sqlite")


def open_alert_database(storage: StorageSettings, clock: Clock = wall_time) -> AlertDatabase:
    """Open the alert database and its repositories (migrated on first use)."""
    return AlertDatabase(alert_db_url(storage), clock=clock)


def open_series_store(
    storage: StorageSettings, registry: MeterRegistry
) -> tuple[SeriesStore, dict[str, Callable[[], float]]]:
    """Open the configured series store; return it with the gauges it offers."""
    if storage.series_backend == "sqlite":
        from meterguard.stores.sqlite_series import SqliteSeriesStore

        sqlite_store = SqliteSeriesStore(
            storage.data_dir / "series.sqlite",
            registry,
            retention_days=storage.series_retention_days,
        )
        return sqlite_store, {}
    from meterguard.stores.influx import InfluxSeriesStore

    influx = storage.influxdb
    store = InfluxSeriesStore(
        influx,
        registry,
        api="v1" if storage.series_backend == "influxdb-v1" else "v2",
        spool_dir=influx.spool_dir or storage.data_dir / "influx-spool",
    )
    gauges: dict[str, Callable[[], float]] = {
        "influx_buffered_readings": lambda: store.buffered_rows,
        "influx_spooled_readings": lambda: store.spool.disk_rows,
        "influx_written_readings": lambda: store.counters.rows_written,
        "influx_dropped_readings": lambda: store.spool.dropped_rows,
        "influx_rejected_readings": lambda: store.counters.rows_rejected,
    }
    return store, gauges


def open_stores(
    storage: StorageSettings, registry: MeterRegistry, clock: Clock = wall_time
) -> tuple[SeriesStore, AlertDatabase, dict[str, Callable[[], float]]]:
    """Open both stores as configured; the alert database reads `clock`."""
    series, gauges = open_series_store(storage, registry)
    return series, open_alert_database(storage, clock), gauges


def open_photo_files(storage: StorageSettings) -> PhotoFiles:
    """Return the photo store: the configured folder, or `photos` in data_dir."""
    return PhotoFiles(storage.photo_dir or storage.data_dir / "photos")
