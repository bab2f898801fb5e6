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
        raise ConfigError(settings.name, [("type", "DLMS sources are not available yet")])
    from collector.mqtt import MqttSource

    return MqttSource(settings, registry, status)
