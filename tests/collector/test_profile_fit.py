"""A Modbus device's register map must fit its meter: the default follows the service, a map
of the other kind is refused with its key, and registers that answer the impossible are
reported in the meter's status."""

from __future__ import annotations

import logging
import math
import subprocess
from pathlib import Path

import pytest

from collector.modbus import (
    ModbusSource,
    ModbusSourceSettings,
    describe_exception,
    impossible_values,
)
from collector.registry import check_sources
from meterguard.errors import ConfigError
from meterguard.model import Meter, MeterRegistry
from meterguard.status import StatusBoard
from simulators.meter import Reversal, SimulatedMeter
from simulators.modbus_gateway import ModbusGateway
from tests.cli import run_cli
from tests.conftest import free_port

CONFIG = """
[storage]
data_dir = "data"
[[meters]]
id = "HOUSE"
service = "1p2w"
nominal_v = 230
[[meters]]
id = "SHOP"
service = "3p4w"
nominal_v = 230
[[sources]]
type = "modbus"
name = "gw"
[[sources.devices]]
meter = "HOUSE"
unit = 1
{house}
[[sources.devices]]
meter = "SHOP"
unit = 2
{shop}
"""


def _check(tmp_path: Path, house: str = "", shop: str = "") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "meterguard.toml"
    config.write_text(CONFIG.format(house=house, shop=shop))
    return run_cli("run", "--check", "--config", str(config))


def test_check_refuses_a_three_phase_map_on_a_single_phase_meter(tmp_path: Path) -> None:
    done = _check(tmp_path, house='profile = "sdm630"')
    assert done.returncode == 2
    assert "sources[0].devices[0].profile" in done.stderr
    assert "'sdm630' is a three-phase register map" in done.stderr
    assert "1p2w" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_refuses_a_single_phase_map_on_a_three_phase_meter(tmp_path: Path) -> None:
    done = _check(tmp_path, shop='profile = "sdm120"')
    assert done.returncode == 2
    assert "sources[0].devices[1].profile" in done.stderr
    assert "'sdm120' is a single-phase register map" in done.stderr


def test_check_accepts_the_defaults_and_fitting_maps(tmp_path: Path) -> None:
    done = _check(tmp_path)
    assert done.returncode == 0, done.stderr
    done = _check(tmp_path, house='profile = "sdm120"', shop='profile = "sdm630"')
    assert done.returncode == 0, done.stderr


def test_profile_files_are_judged_by_what_they_read(tmp_path: Path) -> None:
    registry = MeterRegistry(
        [
            Meter(id="HOUSE", service="1p2w", nominal_v=230),
            Meter(id="SHOP", service="3p4w", nominal_v=230),
        ]
    )
    three = tmp_path / "three.toml"
    three.write_text(
        'name = "three"\nregisters = [{ quantity = "v1", address = 0 },'
        ' { quantity = "i3", address = 2 }]\n'
    )
    energy = tmp_path / "energy.toml"  # no per-phase quantity: fits any service
    energy.write_text('name = "energy"\nregisters = [{ quantity = "e_imp", address = 0 }]\n')
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "devices": [
                {"meter": "HOUSE", "unit": 1, "profile": str(three)},
                {"meter": "SHOP", "unit": 2, "profile": str(energy)},
                {"meter": "SHOP", "unit": 3, "profile": "sdm999"},
            ],
        }
    )
    with pytest.raises(ConfigError) as raised:
        check_sources([settings], registry)
    keys = [key for key, _ in raised.value.problems]
    assert keys == ["sources[0].devices[0].profile", "sources[0].devices[2].profile"]
    assert "no such profile" in raised.value.problems[1][1]


async def test_a_single_phase_meter_without_a_profile_is_read_as_one() -> None:
    fleet = [Meter(id="HOUSE", service="1p2w", nominal_v=230)]
    port = free_port()
    settings = ModbusSourceSettings.model_validate(
        {"name": "gw", "port": port, "timeout_s": 1, "devices": [{"meter": "HOUSE", "unit": 1}]}
    )
    sims = [(1, SimulatedMeter(meter=fleet[0], seed=1, base_kw=2.0))]
    async with (
        ModbusGateway(sims, port=port) as gateway,
        ModbusSource(settings, MeterRegistry(fleet), StatusBoard()) as source,
    ):
        batch = await source.poll_once()
    assert gateway.requests_served == 1  # one SDM120 read, not the SDM630's two
    assert batch.col("i1")[0] > 1.0
    # Quantities a single-phase meter does not have are not measured, not 0.
    for quantity in ("in", "v2", "i2", "p3"):
        assert math.isnan(batch.col(quantity)[0])


async def test_registers_that_answer_the_impossible_are_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="collector.modbus")
    fleet = [Meter(id="SHOP", service="3p4w", nominal_v=230)]
    # A map with mistakes: i1 at phase 3's active power (negative: that CT is reversed),
    # v2 and f at addresses the meter leaves empty (0), p2 where it belongs.
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        'name = "wrong"\nmax_gap = 64\nregisters = [\n'
        '  { quantity = "v1", address = 0x00 },\n'
        '  { quantity = "i1", address = 0x10 },\n'
        '  { quantity = "v2", address = 0x30 },\n'
        '  { quantity = "p2", address = 0x0E },\n'
        '  { quantity = "f", address = 0x40 },\n'
        "]\n"
    )
    port = free_port()
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "timeout_s": 1,
            "devices": [{"meter": "SHOP", "unit": 1, "profile": str(wrong)}],
        }
    )
    sim = SimulatedMeter(meter=fleet[0], seed=2, base_kw=4.0, reversal=Reversal(phase=3))
    status = StatusBoard()
    async with (
        ModbusGateway([(1, sim)], port=port),
        ModbusSource(settings, MeterRegistry(fleet), status) as source,
    ):
        for _ in range(5):
            await source.poll_once()
    shop = status.get("SHOP")
    assert shop is not None
    assert shop.online  # it answers; what it answers is wrong
    assert set(shop.register_problems) == {"i1", "v2", "f"}
    assert "below zero" in shop.register_problems["i1"]
    assert "while phase 2 carries" in shop.register_problems["v2"]
    assert "0 Hz" in shop.register_problems["f"]
    assert shop.as_dict()["register_problems"] == shop.register_problems
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # once per register, not per poll
    assert all("check the profile" in w for w in warnings)


def test_impossible_values_leave_the_possible_alone() -> None:
    assert impossible_values({"v1": math.nan, "i2": -0.5, "p3": -900.0}, 3) == {
        "v1": "answers nan (not a number)",
        "i2": "answers -0.5, below zero",
    }
    # An idle phase, a neutral of 0, export: all possible.
    idle = {"v1": 230.0, "i1": 0.0, "p1": 0.0, "in": 0.0, "p2": -400.0, "v2": 231.0, "f": 50.0}
    assert impossible_values(idle, 3) == {}
    # A lost voltage with no power on that phase is possible (a blown fuse, a cut link).
    assert impossible_values({"v3": 0.0, "p3": 0.0, "v1": 230.0}, 3) == {}


def test_gateway_exceptions_say_what_they_mean() -> None:
    def described(code: int) -> tuple[str, str, int | None]:
        failure = describe_exception(code)
        return failure.kind, failure.detail, failure.code

    assert described(11) == ("gateway", "target device did not respond (exception 11)", 11)
    assert described(10) == ("gateway", "path unavailable (exception 10)", 10)
    assert described(2) == ("device_exception", "illegal data address (exception 2)", 2)
    assert described(77) == ("device_exception", "exception code 77", 77)
