"""Build a source from its settings; DLMS and MQTT code is imported only when configured."""

from __future__ import annotations

from collections.abc import Sequence

from collector.base import Source
from collector.profiles import default_profile, profile_misfit, resolve_profile
from meterguard.errors import ConfigError
from meterguard.model import MeterRegistry
from meterguard.settings import DlmsSourceSettings, ModbusSourceSettings, SourceSettings
from meterguard.status import StatusBoard


def check_sources(sources: Sequence[SourceSettings], registry: MeterRegistry) -> None:
    """Refuse Modbus devices whose profile cannot be loaded or does not fit the meter.

    Each problem names its key, e.g. `sources[0].devices[2].profile`; the config check
    (`meterguard run --check`) and the service's start both come through here.
    """
    problems: list[tuple[str, str]] = []
    for s, source in enumerate(sources):
        if not isinstance(source, ModbusSourceSettings):
            continue
        for d, device in enumerate(source.devices):
            meter = registry.get(device.meter)
            if meter is None:
                continue  # the settings' fleet check reports unknown meters
            key = f"sources[{s}].devices[{d}].profile"
            try:
                profile = resolve_profile(device.profile or default_profile(meter.service))
            except ConfigError as exc:
                problems += [(key, f"{where}: {message}") for where, message in exc.problems]
                continue
            misfit = profile_misfit(profile, meter)
            if misfit is not None:
                problems.append((key, misfit))
    if problems:
        raise ConfigError("the sources", problems)


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
