"""Typed settings from one TOML file plus MG_* environment overrides, loaded on demand."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from meterguard.errors import ConfigError, MeterCsvError
from meterguard.model import Meter
from meterguard.notifiers import NotifySettings

ENV_PREFIX = "MG_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageSettings(_Section):
    """Where the embedded stores keep their files."""

    data_dir: Path = Field(
        default=Path("data"), description="Folder for the SQLite series and alert stores."
    )


class ApiSettings(_Section):
    """The HTTP API and web pages."""

    enabled: bool = Field(default=True, description="Serve the API from `meterguard run`.")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0: any free one).")


class EngineSettings(_Section):
    """How readings flow from the sources into the detectors and stores."""

    queue_batches: int = Field(
        default=256, ge=1, description="Batches that may wait between sources and the engine."
    )


class ModbusDeviceSettings(_Section):
    """One meter behind a Modbus gateway."""

    meter: str = Field(min_length=1, description="Meter id (must be in the registry).")
    unit: int = Field(ge=1, le=247, description="Modbus unit id on the gateway's bus.")
    profile: str = Field(default="sdm630", description="Register map: sdm630, sdm120, ...")


class ModbusSourceSettings(_Section):
    """A Modbus TCP (or RTU-over-TCP) gateway and the meters on its bus."""

    type: Literal["modbus"] = "modbus"
    name: str = Field(min_length=1, description="Name of the gateway, used in logs and status.")
    host: str = Field(default="127.0.0.1", description="Gateway address.")
    port: int = Field(default=502, ge=1, le=65535, description="Gateway TCP port.")
    framer: Literal["socket", "rtu"] = Field(
        default="socket", description="socket: Modbus TCP (MBAP); rtu: RTU frames over TCP."
    )
    interval_s: float = Field(default=5.0, gt=0, description="Seconds between polls of a meter.")
    timeout_s: float = Field(default=2.0, gt=0, description="Seconds to wait for one answer.")
    retries: int = Field(default=1, ge=0, le=10, description="Retries of a failed request.")
    devices: list[ModbusDeviceSettings] = Field(
        default_factory=list, description="Meters on this gateway's bus."
    )

    @model_validator(mode="after")
    def _units_unique(self) -> ModbusSourceSettings:
        units = [d.unit for d in self.devices]
        if len(units) != len(set(units)):
            raise ValueError(f"gateway {self.name!r} lists a unit id twice")
        return self


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
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="Webhook and MQTT receivers of alerts."
    )
    meters_csv: Path | None = Field(
        default=None, description="A meters.csv to load the fleet from (TELEMETRY.md)."
    )
    meters: list[Meter] = Field(default_factory=list, description="Meters listed inline.")
    sources: list[ModbusSourceSettings] = Field(
        default_factory=list, description="Where readings come from."
    )
    detectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-detector options by detector name; each detector validates its own.",
    )

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


def _format_loc(loc: tuple[int | str, ...]) -> str:
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
        problems = [(_format_loc(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigError(source, problems) from exc
    settings.storage.data_dir = _resolve(base, settings.storage.data_dir) or base
    settings.meters_csv = _resolve(base, settings.meters_csv)
    check_fleet(settings, source)
    return settings


def check_fleet(settings: Settings, source: str) -> None:
    """Check that meter ids are unique and that every source names a known meter."""
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
    for s, src in enumerate(settings.sources):
        for d, dev in enumerate(src.devices):
            if dev.meter not in ids:
                problems.append(
                    (f"sources[{s}].devices[{d}].meter", f"unknown meter {dev.meter!r}")
                )
    if problems:
        raise ConfigError(source, problems)
