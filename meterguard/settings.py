"""Typed settings from one TOML file plus MG_* environment overrides, loaded on demand."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from meterguard.calendar import CalendarSettings
from meterguard.errors import ConfigError, MeterCsvError
from meterguard.model import Meter
from meterguard.notify_settings import NotifySettings
from meterguard.source_settings import SourceTable, entry_name
from meterguard.stores.config import InfluxSettings as InfluxSettings
from meterguard.stores.config import StorageSettings as StorageSettings
from meterguard.validation import ValidationSettings

ENV_PREFIX = "MG_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiSettings(_Section):
    """The HTTP API and web pages."""

    enabled: bool = Field(default=True, description="Serve the API from `meterguard run`.")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0: any free one).")
    anonymous_role: Literal["viewer"] | None = Field(
        default=None,
        description="Role of requests without a token (viewer: read-only access without login);"
        " none: every request needs a token.",
    )
    token_hours: float = Field(
        default=12.0,
        gt=0,
        le=24 * 366,
        description="Hours a token from POST /api/login works (API keys for machines: no expiry).",
    )
    login_max_failures: int = Field(
        default=5,
        ge=0,
        le=10_000,
        description="Failed logins for one name within login_window_s before further attempts"
        " are refused with 429; 0: no limit.",
    )
    login_address_max_failures: int = Field(
        default=20,
        ge=0,
        le=100_000,
        description="Failed logins from one client address (any names) within login_window_s"
        " before it is refused; 0 where one address stands for many users (a proxy, NAT).",
    )
    photo_max_mb: float = Field(
        default=10.0,
        gt=0,
        le=200,
        description="Largest photo a crew may upload, in MB (10^6 bytes); larger ones get 413.",
    )
    login_window_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Seconds a failed login counts against its name and address.",
    )


class EngineSettings(_Section):
    """How readings flow from the sources into the detectors and stores."""

    queue_batches: int = Field(
        default=256, ge=1, description="Batches that may wait between sources and the engine."
    )
    tick_s: float = Field(
        default=300.0,
        ge=1.0,
        le=3600.0,
        description="Data time between the detectors' polls for verdicts reached without a "
        "reading (a silent meter, an hourly window closed), s: a silence is raised at the "
        "first poll after it is long enough.",
    )


class LeaseSettings(_Section):
    """Gateway leases: several processes share the polled sources, each polled by one."""

    enabled: bool = Field(
        default=False,
        description="Poll a Modbus gateway or DLMS source only while holding its lease in the "
        "alert database, so that processes sharing that database poll each exactly once.",
    )
    ttl_s: float = Field(
        default=15.0,
        ge=1.0,
        le=300.0,
        description="Seconds a lease lasts unless renewed (renewed every third of it); a dead "
        "process's gateways are taken over within about 1 1/3 of it.",
    )
    owner: str = Field(
        default="",
        max_length=200,
        description="This process's name in the leases (empty: host name and process id).",
    )


class ScaleSettings(_Section):
    """Partitioned mode: ingest publishes readings to NATS JetStream, workers judge them."""

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="The NATS server (JetStream enabled)."
    )
    stream: str = Field(
        default="MG_READINGS",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="JetStream stream holding the readings, created if missing.",
    )
    subject_prefix: str = Field(
        default="mg.readings",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="Readings of partition p go to subject <prefix>.<p>.",
    )
    partitions: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Partitions (by transformer); every ingest and worker must agree on it.",
    )
    retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="Age of the readings the stream keeps: the window a worker replays to "
        "rebuild a partition it takes over (it should cover the detectors' learning).",
    )
    replicas: int = Field(
        default=1, ge=1, le=5, description="Stream replicas in a NATS cluster (1: one server)."
    )
    lease_ttl_s: float = Field(
        default=10.0,
        ge=3.0,
        le=300.0,
        description="Seconds a worker's partition lease lasts unless renewed (every third "
        "of it); a dead worker's partitions are taken over within about 1 1/3 of it.",
    )
    snapshot_every_s: float = Field(
        default=300.0,
        ge=0.0,
        description="Seconds between snapshots of each partition's detector state, kept in "
        "a JetStream object store: a worker taking a partition over loads the snapshot and "
        "replays only what followed it (0: no snapshots, replay the whole window).",
    )
    snapshot_bucket: str = Field(
        default="MG_SNAPSHOTS",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The object store bucket of the snapshots (only workers may write it).",
    )
    worker: str = Field(
        default="",
        max_length=200,
        description="This worker's name in the leases (empty: host name and process id).",
    )


class Settings(BaseSettings):
    """Everything meterguard reads from meterguard.toml and MG_* variables."""

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix=ENV_PREFIX, env_nested_delimiter="__"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging threshold."
    )
    storage: StorageSettings = Field(default_factory=StorageSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    validation: ValidationSettings = Field(
        default_factory=ValidationSettings,
        description="Physical bounds and the clock every reading is checked against.",
    )
    calendar: CalendarSettings = Field(
        default_factory=CalendarSettings,
        description="Public holidays, weekend and local time the detectors judge days by.",
    )
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="Webhook and MQTT receivers of alerts."
    )
    leases: LeaseSettings = Field(
        default_factory=LeaseSettings, description="Gateway leases shared between processes."
    )
    scale: ScaleSettings = Field(
        default_factory=ScaleSettings,
        description="Partitioned ingest and workers (meterguard ingest / worker); unused by "
        "meterguard run.",
    )
    meters_csv: Path | None = Field(
        default=None, description="A meters.csv to load the fleet from (docs/FORMATS.md)."
    )
    meters: list[Meter] = Field(default_factory=list, description="Meters listed inline.")
    sources: list[SourceTable] = Field(
        default_factory=list,
        description="Where readings come from: type = modbus, dlms, mqtt or another "
        "registered source type; each is checked by its own type's settings when the "
        "sources are built.",
    )
    detectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-detector options by detector name; each detector validates its own.",
    )

    _origin: str = PrivateAttr(default="defaults and environment")
    _config_dir: Path | None = PrivateAttr(default=None)

    @property
    def origin(self) -> str:
        """Where the settings came from, for error messages: the file, or the defaults."""
        return self._origin

    @property
    def config_dir(self) -> Path:
        """The folder relative paths are taken from: the file's, else the working folder."""
        return self._config_dir or Path.cwd()

    def loaded_from(self, origin: str, folder: Path) -> None:
        """Record where the settings were read from (load_settings does)."""
        self._origin, self._config_dir = origin, folder

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment must win over them.
        return (env_settings, init_settings)

    def all_meters(self) -> list[Meter]:
        """Return the fleet: meters_csv first, then the inline meters."""
        from meterguard.meters_csv import read_meters_csv

        fleet = read_meters_csv(self.meters_csv) if self.meters_csv else []
        return fleet + list(self.meters)


def config_key(loc: tuple[int | str, ...]) -> str:
    """Return a validation error's location as the key in the file, e.g. sources[0].port."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts) or "(top level)"


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None or value.is_absolute():
        return value
    return base / value


def load_settings(path: Path | None = None) -> Settings:
    """Load settings from a TOML file (or defaults only) with MG_* overrides applied.

    Relative paths in the file are taken relative to the file's folder. Every problem is
    reported as a ConfigError naming the key.
    """
    data: dict[str, Any] = {}
    source = "defaults and environment"
    base = Path.cwd()
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(source, [("(file)", "no such file")]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [("(file)", f"not valid TOML: {exc}")]) from exc
        base = path.resolve().parent
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = [(config_key(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigError(source, problems) from exc
    settings.storage.data_dir = _resolve(base, settings.storage.data_dir) or base
    settings.meters_csv = _resolve(base, settings.meters_csv)
    settings.storage.photo_dir = _resolve(base, settings.storage.photo_dir)
    # The sources' own paths are resolved against these when their tables are typed.
    settings.loaded_from(source, base)
    check_fleet(settings, source)
    return settings


def check_fleet(settings: Settings, source: str) -> None:
    """Check that meter ids and source names are unique.

    That each source names meters of the fleet is checked with the rest of its settings,
    by the source registry (collector/registry.py).
    """
    try:
        fleet = settings.all_meters()
    except (MeterCsvError, OSError) as exc:
        raise ConfigError(source, [("meters_csv", str(exc))]) from exc
    problems: list[tuple[str, str]] = []
    ids: set[str] = set()
    for meter in fleet:
        if meter.id in ids:
            problems.append(("meters", f"meter {meter.id!r} is listed twice"))
        ids.add(meter.id)
    names: set[str] = set()
    for s, src in enumerate(settings.sources):
        # Counters and status are kept by source name: two of one name would mix them.
        name = entry_name(src)
        if name is None:
            continue  # the source's own settings report the missing name
        if name in names:
            problems.append((f"sources[{s}].name", f"another source is named {name!r}"))
        names.add(name)
    if problems:
        raise ConfigError(source, problems)
