from pathlib import Path

import pytest

from meterguard.runtime import Runtime
from meterguard.settings import load_settings
from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.influx import InfluxSeriesStore
from meterguard.stores.sqlite_series import SqliteSeriesStore


async def test_default_storage_is_sqlite_files_in_the_data_dir(tmp_path: Path) -> None:
    config = tmp_path / "meterguard.toml"
    config.write_text('[storage]\ndata_dir = "state"\nseries_retention_days = 30\n')
    runtime = Runtime.open(load_settings(config))
    try:
        assert isinstance(runtime.series, SqliteSeriesStore)
        assert runtime.series.retention_days == 30
        assert isinstance(runtime.alert_db, AlertDatabase)
        assert runtime.alert_db.url.endswith(str(tmp_path / "state" / "alertdb.sqlite"))
        assert await runtime.alerts.list() == []  # migrated on first use
    finally:
        await runtime.close()
    assert (tmp_path / "state" / "series.sqlite").exists()


async def test_influxdb_backend_and_database_url_come_from_the_config_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: str
) -> None:
    config = tmp_path / "meterguard.toml"
    config.write_text(
        '[storage]\nseries_backend = "influxdb-v2"\n'
        '[storage.influxdb]\nurl = "http://127.0.0.1:9"\ntoken = "t"\norg = "o"\n'
    )
    url = pg_database.replace("postgresql://", "postgresql+asyncpg://")
    monkeypatch.setenv("MG_STORAGE__ALERT_DB_URL", url)
    monkeypatch.setenv("MG_STORAGE__INFLUXDB__BUCKET", "readings")
    runtime = Runtime.open(load_settings(config))
    try:
        series = runtime.series
        assert isinstance(series, InfluxSeriesStore)
        assert series.api == "v2"
        assert series.settings.bucket == "readings"
        assert series.spool.folder == tmp_path / "data" / "influx-spool"
        assert runtime.gauges["influx_buffered_readings"]() == 0
        assert isinstance(runtime.alert_db, AlertDatabase)
        assert runtime.alert_db.url == url
    finally:
        await runtime.close()
