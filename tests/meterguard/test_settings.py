from pathlib import Path

import pytest

from collector.modbus import ModbusSourceSettings
from collector.registry import typed_sources
from detectors.engine import build_detectors
from meterguard.errors import ConfigError
from meterguard.model import MeterRegistry
from meterguard.settings import load_settings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "meterguard.example.toml"


def test_example_config_loads_and_builds_every_part() -> None:
    settings = load_settings(EXAMPLE)
    assert [m.id for m in settings.all_meters()] == ["M0001", "M0002"]
    modbus = typed_sources(settings, MeterRegistry(settings.all_meters()))[0]
    assert isinstance(modbus, ModbusSourceSettings)
    assert modbus.devices[1].profile == "sdm120"
    assert settings.storage.data_dir == EXAMPLE.parent / "data"
    detectors = build_detectors(settings.detectors, MeterRegistry(settings.all_meters()))
    assert "reversal" in {d.name for d in detectors}


def test_example_documents_every_default() -> None:
    # The example must state the defaults, not other values: loading it must equal
    # loading an empty file except for the fleet it lists.
    example = load_settings(EXAMPLE)
    assert example.api.port == 8000
    assert example.api.host == "127.0.0.1"
    assert example.engine.queue_batches == 256
    assert example.log_level == "INFO"
    reversal = build_detectors(example.detectors, MeterRegistry())[0].config
    defaults = build_detectors({}, MeterRegistry())[0].config
    assert reversal == defaults


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[api]\nport = 9000\nhost = "127.0.0.1"\n')
    monkeypatch.setenv("MG_API__PORT", "9100")
    monkeypatch.setenv("MG_LOG_LEVEL", "DEBUG")
    settings = load_settings(path)
    assert settings.api.port == 9100
    assert settings.api.host == "127.0.0.1"
    assert settings.log_level == "DEBUG"


def _typed(path: Path) -> None:
    """Load a config and type its sources, as `meterguard run` does."""
    settings = load_settings(path)
    typed_sources(settings, MeterRegistry(settings.all_meters()))


def test_bad_values_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[api]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert {key for key, _ in info.value.problems} == {"api.port"}
    assert str(path) in str(info.value)
    # A source's table is checked by its own type's settings, every key of it at once.
    path.write_text(
        '[[sources]]\nname = "gw"\nportt = 5\n[[sources.devices]]\nmeter = "X"\nunit = 300\n'
        '[[sources]]\ntype = "mqtt"\nname = "mq"\nport = "x"\n'
    )
    with pytest.raises(ConfigError) as info:
        _typed(path)
    keys = {key for key, _ in info.value.problems}
    assert keys == {
        "sources[0].portt",
        "sources[0].devices[0].unit",
        "sources[1].port",
        "sources[1].subscriptions",
    }
    assert str(path) in str(info.value)


def test_unknown_meter_in_a_source_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[[sources]]\nname = "gw"\n[[sources.devices]]\nmeter = "NOPE"\nunit = 1\n')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.devices\[0\]\.meter: unknown meter"):
        _typed(path)
    twice = '[[sources]]\nname = "gw"\n[[sources]]\nname = "gw"\nport = 5021\n'
    path.write_text(twice)
    with pytest.raises(ConfigError, match=r"sources\[1\]\.name: another source is named 'gw'"):
        load_settings(path)
    path.write_text("[api\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml")


def test_detector_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_detectors(
            {"reversal": {"raise_after_s": -1, "bogus": 1}, "nosuch": {}}, MeterRegistry()
        )
    keys = {key for key, _ in info.value.problems}
    assert keys == {
        "detectors.reversal.raise_after_s",
        "detectors.reversal.bogus",
        "detectors.nosuch",
    }
