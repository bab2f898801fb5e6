"""The source registry: [[sources]] tables typed by their `type`, plug-in source types."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import pytest
from pydantic import Field

from collector.base import batch_from_rows
from collector.modbus import ModbusSource, ModbusSourceSettings
from collector.mqtt import MqttSource, MqttSourceSettings
from collector.registry import (
    SOURCE_TYPES,
    build_sources,
    register_source,
    typed_sources,
)
from meterguard.errors import ConfigError
from meterguard.model import MeterRegistry, ReadingBatch
from meterguard.settings import Settings, load_settings
from meterguard.source_settings import SourceSettingsBase
from meterguard.status import MeterStatus, StatusBoard

ROOT = Path(__file__).parents[2]
FLEET = '[[meters]]\nid = "M1"\nservice = "1p2w"\nnominal_v = 230\n'


class TickSettings(SourceSettingsBase):
    """A fictitious source type: one meter, a fixed reading, a table file beside the config."""

    type: Literal["test-tick"] = "test-tick"
    meter: str = Field(min_length=1)
    watts: float = Field(default=100.0, ge=0)
    table: Path | None = None

    def meter_ids(self) -> list[str]:
        return [self.meter]

    def meter_key(self, index: int) -> str:
        return "meter"

    def resolve_paths(self, base: Path) -> None:
        if self.table is not None and not self.table.is_absolute():
            self.table = base / self.table


class TickSource:
    """Yields one reading of its meter per batch, as a real source would."""

    def __init__(self, settings: TickSettings, registry: MeterRegistry, status: StatusBoard):
        self.name = settings.name
        self.settings = settings
        self._slot = registry.slot(settings.meter)
        self._status: MeterStatus = status.meter(settings.meter, settings.name)
        status.register_source(self.name, {}, kind=settings.type)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        ts = 1_767_225_600.0
        while True:
            self._status.succeeded(ts)
            yield batch_from_rows([(ts, self._slot, {"p1": self.settings.watts}, 0)])
            ts += 60.0


def _no_problems(settings: TickSettings, fleet: MeterRegistry) -> list[tuple[str, str]]:
    return [] if settings.watts < 1e6 else [("watts", "more than a meter can carry")]


register_source("test-tick", TickSettings, TickSource, _no_problems)


def _config(tmp_path: Path, sources: str) -> Settings:
    path = tmp_path / "meterguard.toml"
    path.write_text(FLEET + textwrap.dedent(sources))
    return load_settings(path)


def _fleet(settings: Settings) -> MeterRegistry:
    return MeterRegistry(settings.all_meters())


async def test_a_registered_source_type_goes_from_the_file_to_readings(tmp_path: Path) -> None:
    settings = _config(
        tmp_path,
        """
        [[sources]]
        type = "test-tick"
        name = "ticker"
        meter = "M1"
        watts = 250.0
        table = "tables/tick.csv"
        """,
    )
    assert settings.sources == [
        {
            "type": "test-tick",
            "name": "ticker",
            "meter": "M1",
            "watts": 250.0,
            "table": "tables/tick.csv",
        }
    ]
    fleet = _fleet(settings)
    [typed] = typed_sources(settings, fleet)
    assert isinstance(typed, TickSettings)
    assert typed.watts == 250.0
    assert typed.table == tmp_path / "tables" / "tick.csv"  # beside the config file
    status = StatusBoard()
    [source] = build_sources(settings, fleet, status)
    assert isinstance(source, TickSource)
    async with source:
        batch = await anext(source.batches())
    assert batch.col("p1").tolist() == [250.0]
    assert batch.slot.tolist() == [fleet.slot("M1")]
    assert [entry.kind for entry in status.sources()] == ["test-tick"]
    m1 = status.get("M1")
    assert m1 is not None
    assert m1.online


def test_a_registered_type_is_checked_by_its_own_model_and_check(tmp_path: Path) -> None:
    settings = _config(
        tmp_path,
        """
        [[sources]]
        type = "test-tick"
        name = "ticker"
        meter = "NOPE"
        bogus = 1
        [[sources]]
        type = "test-tick"
        name = "big"
        meter = "M1"
        watts = 5e6
        """,
    )
    with pytest.raises(ConfigError) as raised:
        typed_sources(settings, _fleet(settings))
    assert raised.value.problems == [
        ("sources[0].bogus", "Extra inputs are not permitted"),
        ("sources[1].watts", "more than a meter can carry"),
    ]
    assert raised.value.source == str(tmp_path / "meterguard.toml")
    settings = _config(tmp_path, '[[sources]]\ntype = "test-tick"\nname = "t"\nmeter = "NOPE"\n')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.meter: unknown meter 'NOPE'"):
        typed_sources(settings, _fleet(settings))


def test_an_unknown_type_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    settings = _config(tmp_path, '[[sources]]\ntype = "iec104"\nname = "rtu"\n')
    with pytest.raises(ConfigError) as raised:
        typed_sources(settings, _fleet(settings))
    [(key, message)] = raised.value.problems
    assert key == "sources[0].type"
    assert message.startswith("unknown source type 'iec104' (known: ")
    for known in ("dlms", "modbus", "mqtt", "test-tick"):
        assert known in message


async def test_entries_without_a_type_are_modbus_and_typed_ones_pass_as_built(
    tmp_path: Path,
) -> None:
    settings = _config(
        tmp_path,
        """
        [[sources]]
        name = "gw"
        [[sources.devices]]
        meter = "M1"
        unit = 1
        """,
    )
    built = MqttSourceSettings.model_validate(
        {"name": "mq", "subscriptions": [{"topic": "m/{meter}", "format": "meterguard"}]}
    )
    settings.sources.append(built)
    gateway, broker = typed_sources(settings, _fleet(settings))
    assert isinstance(gateway, ModbusSourceSettings)
    assert gateway.devices[0].meter == "M1"
    assert broker is built
    gateway_source, broker_source = build_sources(settings, _fleet(settings), StatusBoard())
    assert isinstance(gateway_source, ModbusSource)
    assert isinstance(broker_source, MqttSource)


def test_a_type_name_taken_by_another_model_is_refused() -> None:
    class OtherTick(SourceSettingsBase):
        type: Literal["test-tick"] = "test-tick"

    with pytest.raises(ValueError, match="registered twice"):
        register_source("test-tick", OtherTick, TickSource)  # type: ignore[arg-type]
    assert SOURCE_TYPES["test-tick"].settings is TickSettings


def test_dlms_settings_are_checked_without_importing_gurux(tmp_path: Path) -> None:
    # gurux-dlms is GPL and optional: typing a DLMS entry must not load it.
    config = tmp_path / "m.toml"
    config.write_text(
        FLEET + '[[sources]]\ntype = "dlms"\nname = "d"\n'
        '[[sources.devices]]\nmeter = "M1"\nport = 4059\n'
    )
    script = (
        "import sys\n"
        "from collector.registry import typed_sources\n"
        "from meterguard.model import MeterRegistry\n"
        "from meterguard.settings import load_settings\n"
        f"s = load_settings(__import__('pathlib').Path({str(config)!r}))\n"
        "[d] = typed_sources(s, MeterRegistry(s.all_meters()))\n"
        "assert d.devices[0].port == 4059, d\n"
        "print(sorted(m for m in sys.modules if m.startswith('gurux')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
