"""Build a source from its settings; DLMS and MQTT code is imported only when configured."""

from __future__ import annotations

from collector.base import Source
from meterguard.errors import ConfigError
from meterguard.model import MeterRegistry
from meterguard.settings import DlmsSourceSettings, ModbusSourceSettings, SourceSettings
from meterguard.status import StatusBoard


def build_source(settings: SourceSettings, registry: MeterRegistry, status: StatusBoard) -> Source:
    """Return the source a config entry describes."""
    if isinstance(settings, ModbusSourceSettings):
        from collector.modbus import ModbusSource

        return ModbusSource(settings, registry, status)
    if isinstance(settings, DlmsSourceSettings):
        try:
            # gurux-dlms (GPLv2) comes with the optional `dlms` extra: see README, Licences.
            from collector.dlms import DlmsSource
        except ImportError as exc:
            raise ConfigError(
                settings.name, [("type", f"DLMS needs `pip install meterguard[dlms]` ({exc})")]
            ) from exc
        return DlmsSource(settings, registry, status)
    from collector.mqtt import MqttSource

    return MqttSource(settings, registry, status)
