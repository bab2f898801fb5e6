"""The [storage] settings: which series backend, its options, and the alert database URL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SeriesBackend = Literal["sqlite", "influxdb-v1", "influxdb-v2"]
Precision = Literal["s", "ms", "us", "ns"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InfluxSettings(_Section):
    """An InfluxDB server: v1 API (/write, /query) or v2 write API (token, org, bucket)."""

    url: str = Field(default="http://127.0.0.1:8086", description="Server base URL.")
    database: str = Field(default="meterguard", description="influxdb-v1: database name.")
    retention_policy: str = Field(
        default="", description="influxdb-v1: retention policy (empty: the database default)."
    )
    username: str = Field(default="", description="influxdb-v1: user (empty: no auth).")
    password: str = Field(default="", description="influxdb-v1: password.")
    create_database: bool = Field(
        default=False, description="influxdb-v1: CREATE DATABASE at start (needs admin rights)."
    )
    token: str = Field(default="", description="influxdb-v2: API token.")
    org: str = Field(default="", description="influxdb-v2: organisation.")
    bucket: str = Field(
        default="meterguard",
        description="influxdb-v2: bucket; series queries use it as the v1 database name.",
    )
    measurement: str = Field(default="meter", min_length=1, description="Measurement name.")
    precision: Precision = Field(default="ms", description="Timestamp precision written.")
    batch_rows: int = Field(default=5000, ge=1, description="Readings per write request.")
    flush_interval_s: float = Field(
        default=1.0, gt=0, description="Longest a reading waits before its batch is sent."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    max_in_flight: int = Field(
        default=2, ge=1, le=16, description="Write requests out at once (oldest chunks first)."
    )
    memory_rows: int = Field(
        default=200_000,
        ge=1,
        description="Readings kept in memory while the server is down; older ones spill to disk.",
    )
    max_buffered_rows: int = Field(
        default=20_000_000,
        ge=1,
        description="Bound of memory plus spill file; past it the oldest are dropped (counted).",
    )
    spool_dir: Path | None = Field(
        default=None, description="Folder for the spill files (default: <data_dir>/influx-spool)."
    )
    retry_initial_s: float = Field(default=0.5, gt=0, description="First retry delay.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest retry delay.")


class StorageSettings(_Section):
    """Where series and alerts are kept."""

    data_dir: Path = Field(
        default=Path("data"), description="Folder for the embedded stores and spill files."
    )
    series_backend: SeriesBackend = Field(
        default="sqlite",
        description="sqlite (embedded), influxdb-v1 (InfluxDB 1.x API) or influxdb-v2.",
    )
    series_retention_days: float = Field(
        default=0, ge=0, description="sqlite: drop readings older than this (0: keep all)."
    )
    alert_db_url: str = Field(
        default="",
        description="SQLAlchemy URL of the alert database, e.g. "
        "postgresql+asyncpg://user@host/db (empty: <data_dir>/alertdb.sqlite).",
    )
    photo_dir: Path | None = Field(
        default=None,
        description="Folder of the crews' photos, one file per SHA-256 (default:"
        " <data_dir>/photos); processes sharing one alert database must share it too.",
    )
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
