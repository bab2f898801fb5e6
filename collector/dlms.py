"""DLMS/COSEM source type: its settings and its registration; the reading is in dlms_gurux.

gurux-dlms, which the reading needs, is GPLv2 and comes with the optional `dlms` extra:
this module imports none of it, so DLMS settings are checked without it, and
collector/dlms_gurux.py is imported only when a DLMS source is built (README, Licences).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from collector.base import Source
from collector.registry import register_source
from meterguard.errors import ConfigError
from meterguard.model import MeterRegistry
from meterguard.source_settings import SourceSettingsBase
from meterguard.status import StatusBoard


class DlmsDeviceSettings(BaseModel):
    """One DLMS/COSEM meter reached through a TCP gateway."""

    model_config = ConfigDict(extra="forbid")

    meter: str = Field(min_length=1, description="Meter id (must be in the registry).")
    host: str | None = Field(default=None, description="Gateway address (default: source's).")
    port: int = Field(ge=1, le=65535, description="TCP port of the meter (or its gateway).")
    logical_address: int = Field(
        default=1, ge=0, le=16383, description="Server (meter) logical device address."
    )
    physical_address: int = Field(
        default=17, ge=0, le=16383, description="HDLC lower (physical) server address."
    )


class DlmsSourceSettings(SourceSettingsBase):
    """DLMS/COSEM meters read over the IEC 62056-47 wrapper or HDLC over TCP."""

    type: Literal["dlms"] = "dlms"
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

    def lease_key(self) -> str:
        """Return the source by name: its meters are read by one process at a time."""
        return f"dlms:{self.name}"


def build_dlms_source(
    settings: DlmsSourceSettings, registry: MeterRegistry, status: StatusBoard
) -> Source:
    """Return a DLMS source; without the `dlms` extra, a ConfigError that says so."""
    try:
        from collector.dlms_gurux import DlmsSource
    except ImportError as exc:
        raise ConfigError(
            settings.name, [("type", f"DLMS needs `pip install meterguard[dlms]` ({exc})")]
        ) from exc
    return DlmsSource(settings, registry, status)


register_source("dlms", DlmsSourceSettings, build_dlms_source)
