"""Settings of the reading sources: Modbus gateways, DLMS/COSEM meters, MQTT subscriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from meterguard.calendar import known_zone


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModbusDeviceSettings(_Section):
    """One meter behind a Modbus gateway."""

    meter: str = Field(min_length=1, description="Meter id (must be in the registry).")
    unit: int = Field(ge=1, le=247, description="Modbus unit id on the gateway's bus.")
    profile: str | None = Field(
        default=None,
        description="Register map: sdm630, sdm120, or the path of a profile TOML file "
        "(relative to the config file; format in docs/COLLECTORS.md). Default: by the "
        "meter's service, sdm120 for 1p2w and sdm630 for 3p4w and 3p3w. A map that does not "
        "fit the service (three-phase on 1p2w, single-phase on three-phase) is refused.",
    )
    interval_s: float | None = Field(
        default=None, gt=0, description="Seconds between polls of this meter (default: gateway's)."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds to wait for one answer (default: gateway's)."
    )
    retries: int | None = Field(
        default=None, ge=0, le=10, description="Retries of a failed poll (default: gateway's)."
    )


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
    retries: int = Field(default=1, ge=0, le=10, description="Retries of a failed poll.")
    pause_s: float = Field(
        default=0.0, ge=0, description="Pause between two requests on the bus (slow gateways)."
    )
    backoff_max_s: float = Field(
        default=60.0, gt=0, description="Longest wait between reconnects to a dead gateway."
    )
    devices: list[ModbusDeviceSettings] = Field(
        default_factory=list, description="Meters on this gateway's bus."
    )

    @model_validator(mode="after")
    def _units_unique(self) -> ModbusSourceSettings:
        units = [d.unit for d in self.devices]
        if len(units) != len(set(units)):
            raise ValueError(f"gateway {self.name!r} lists a unit id twice")
        return self

    def meter_ids(self) -> list[str]:
        """Return the meters this source reads."""
        return [d.meter for d in self.devices]

    def resolve_paths(self, base: Path) -> None:
        """Make profile file paths absolute against the config file's folder."""
        for device in self.devices:
            profile = device.profile
            if (
                profile is not None
                and profile.endswith(".toml")
                and not Path(profile).is_absolute()
            ):
                device.profile = str(base / profile)


class DlmsDeviceSettings(_Section):
    """One DLMS/COSEM meter reached through a TCP gateway."""

    meter: str = Field(min_length=1, description="Meter id (must be in the registry).")
    host: str | None = Field(default=None, description="Gateway address (default: source's).")
    port: int = Field(ge=1, le=65535, description="TCP port of the meter (or its gateway).")
    logical_address: int = Field(
        default=1, ge=0, le=16383, description="Server (meter) logical device address."
    )
    physical_address: int = Field(
        default=17, ge=0, le=16383, description="HDLC lower (physical) server address."
    )


class DlmsSourceSettings(_Section):
    """DLMS/COSEM meters read over the IEC 62056-47 wrapper or HDLC over TCP."""

    type: Literal["dlms"] = "dlms"
    name: str = Field(min_length=1, description="Name of the source, used in logs and status.")
    host: str = Field(default="127.0.0.1", description="Default gateway address.")
    transport: Literal["wrapper", "hdlc"] = Field(
        default="wrapper", description="wrapper: IEC 62056-47 over TCP; hdlc: HDLC over TCP."
    )
    client_address: int = Field(
        default=16, ge=1, le=127, description="Client SAP: 16 public client (no security)."
    )
    password: str | None = Field(
        default=None, description="Low-level-security password; none: no authentication."
    )
    interval_s: float = Field(default=15.0, gt=0, description="Seconds between polls.")
    timeout_s: float = Field(default=5.0, gt=0, description="Seconds to wait for one answer.")
    event_log: str = Field(
        default="0.0.99.98.1.255",
        description="OBIS code of the event log read for tamper events (IDIS fraud log).",
    )
    event_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds between reads of the event log."
    )
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest reconnect wait.")
    devices: list[DlmsDeviceSettings] = Field(default_factory=list, description="The meters.")

    def meter_ids(self) -> list[str]:
        """Return the meters this source reads."""
        return [d.meter for d in self.devices]


class MqttSubscription(_Section):
    """One topic template and the payload format published on it."""

    topic: str = Field(
        min_length=1,
        description="Topic template; {meter} matches one level and names the meter, "
        "e.g. shellies/{meter}/status/em:0.",
    )
    format: Literal["shelly", "tasmota", "meterguard"] = Field(
        description="Payload decoder: shelly (Pro 3EM em:0 / NotifyStatus), tasmota "
        "(SENSOR ENERGY), meterguard (docs/COLLECTORS.md)."
    )
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of devices that send local time without an offset "
        "(Tasmota's Time unless its Timezone is 0), e.g. Asia/Kolkata; default UTC.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else known_zone(value)

    @model_validator(mode="after")
    def _has_meter(self) -> MqttSubscription:
        if self.format != "meterguard" and self.topic.count("{meter}") != 1:
            raise ValueError(f"topic {self.topic!r} must contain {{meter}} exactly once")
        return self


class MqttSourceSettings(_Section):
    """An MQTT broker subscription at QoS 1 with a persistent session."""

    type: Literal["mqtt"] = "mqtt"
    name: str = Field(min_length=1, description="Name of the source, used in logs and status.")
    host: str = Field(default="127.0.0.1", description="Broker address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    client_id: str | None = Field(
        default=None,
        description="Fixed client id of the persistent session (default: meterguard-<name>); "
        "workers sharing a fleet each need their own.",
    )
    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT protocol version.")
    qos: Literal[0, 1, 2] = Field(default=1, description="Subscription QoS.")
    session_expiry_s: int = Field(
        default=86400,
        ge=0,
        description="How long the broker keeps the session (and queues readings) while "
        "meterguard is away; MQTT 3.1.1 uses clean_session=false instead.",
    )
    interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the devices publish; a meter silent for several intervals "
        "is reported offline (comms loss).",
    )
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive.")
    username: str | None = Field(default=None, description="Broker user name.")
    password: str | None = Field(default=None, description="Broker password.")
    tls: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS (default: system).")
    cert_file: Path | None = Field(default=None, description="Client certificate for TLS.")
    key_file: Path | None = Field(default=None, description="Client key for TLS.")
    share_group: str | None = Field(
        default=None,
        description="Subscribe as $share/<group>/<topic> (MQTT 5 shared subscription) so "
        "several workers split one fleet.",
    )
    meter_map: dict[str, str] = Field(
        default_factory=dict,
        description="Topic name -> meter id, for devices whose topic is not the meter id.",
    )
    batch_max: int = Field(default=5000, ge=1, description="Readings per batch at most.")
    flush_s: float = Field(
        default=0.05, gt=0, description="Longest wait before a partial batch is handed on."
    )
    dead_letters: int = Field(
        default=1000, ge=0, description="Malformed payloads kept (newest) with their reason."
    )
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest reconnect wait.")
    subscriptions: list[MqttSubscription] = Field(
        min_length=1, description="Topic templates and their payload formats."
    )

    def meter_ids(self) -> list[str]:
        """Return the meters named in meter_map (others come from topics at run time)."""
        return list(self.meter_map.values())

    def resolve_paths(self, base: Path) -> None:
        """Make TLS file paths absolute against the config file's folder."""
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                setattr(self, name, base / value)


def _source_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "modbus"))
    return str(getattr(value, "type", "modbus"))


#: A source entry of the config: `type` picks the kind (modbus when absent).
SourceSettings = Annotated[
    Annotated[ModbusSourceSettings, Tag("modbus")]
    | Annotated[DlmsSourceSettings, Tag("dlms")]
    | Annotated[MqttSourceSettings, Tag("mqtt")],
    Discriminator(_source_type),
]
