"""The fleet served over DLMS/COSEM (own process) and read by the DLMS collector."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collector.dlms import DlmsSourceSettings
from collector.dlms_gurux import DlmsSource
from meterguard.model import MeterEvent, MeterRegistry, ReadingBatch
from meterguard.status import StatusBoard
from simulators.live import LiveFleet
from simulators.physics import FleetModel
from simulators.scenario import HOUR_S, load_scenario
from tests.collector.test_dlms import free_ports

FLEET = "[fleet]\nmeters = 30\nseed = 21\ndays = 3\n"


@contextmanager
def served(args: list[str]) -> Iterator[list[str]]:
    """Run simulators.dlms_fleet until the block ends; yield the meter ids it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.dlms_fleet", *args], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(b"listening"), line
        count = int(line.split(b"(")[1].split()[0])
        ids = [process.stdout.readline().split()[0].decode() for _ in range(count)]
        yield ids
    finally:
        process.terminate()
        process.wait(10)


def _source(port: int, fleet: LiveFleet, ids: list[str]) -> DlmsSource:
    settings = DlmsSourceSettings.model_validate(
        {
            "name": "dlms",
            "transport": "wrapper",
            "interval_s": 0.2,
            "timeout_s": 2.0,
            "event_interval_s": 0.2,
            "devices": [{"meter": m, "port": port + k} for k, m in enumerate(ids)],
        }
    )
    registry = MeterRegistry([fleet.meter(m).meter for m in ids])
    return DlmsSource(settings, registry, StatusBoard())


async def test_dlms_registers_carry_the_fleet_physics(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.toml"
    spec.write_text(FLEET)
    fleet = LiveFleet(FleetModel(load_scenario(spec)))
    three = next(m for m in fleet.meters if m.meter.role == "customer" and m.meter.phases == 3)
    single = next(m for m in fleet.meters if m.meter.phases == 1)
    port = free_ports(2)
    at = fleet.model.scenario.start_s + 34 * HOUR_S
    args = ["--scenario", str(spec), "--port", str(port), "--speed", "0", "--start-h", "34"]
    with served([*args, "--only", three.meter.id, "--only", single.meter.id]) as ids:
        assert ids == [three.meter.id, single.meter.id]
        async with _source(port, fleet, ids) as source:
            batch = await source.poll_once()
    assert len(batch) == 2
    for row, lm in enumerate((three, single)):
        expected = lm.read(at)
        for k in range(1, lm.meter.phases + 1):
            assert math.isclose(batch.col(f"v{k}")[row], expected[f"v{k}"], abs_tol=0.051)
            assert math.isclose(batch.col(f"i{k}")[row], expected[f"i{k}"], abs_tol=0.0051)
            assert math.isclose(batch.col(f"p{k}")[row], expected[f"p{k}"], abs_tol=0.51)
            # What the registers say is physically consistent: |P| <= V·I.
            v, i, p = (batch.col(f"{q}{k}")[row] for q in "vip")
            assert abs(p) <= v * i * 1.001 + 1.0
        assert math.isclose(batch.col("e_imp")[row], expected["e_imp"], abs_tol=0.001)
        assert math.isclose(batch.col("f")[row], expected["f"], abs_tol=0.0051)
    assert math.isnan(batch.col("v2")[1])


@pytest.mark.slow  # a simulated fleet served over DLMS and read back, in real time
async def test_dlms_fraud_log_carries_the_scenarios_tamper_events(tmp_path: Path) -> None:
    probe = tmp_path / "probe.toml"
    probe.write_text(FLEET)
    meter = next(
        m
        for m in LiveFleet(FleetModel(load_scenario(probe))).meters
        if m.meter.role == "customer" and m.meter.phases == 3
    )
    spec = tmp_path / "magnet.toml"
    # The magnet goes on 240 simulated seconds after live time starts (4 s at x60).
    spec.write_text(
        FLEET + f'\n[[incident]]\nkind = "magnet"\nmeter = "{meter.meter.id}"\n'
        "start_h = 30.0667\nduration_h = 3\n"
    )
    fleet = LiveFleet(FleetModel(load_scenario(spec)))
    port = free_ports(1)
    args = ["--scenario", str(spec), "--port", str(port), "--speed", "60", "--start-h", "30"]
    batches: list[ReadingBatch] = []
    with served([*args, "--only", meter.meter.id]) as ids:
        async with _source(port, fleet, ids) as source:
            # Until the magnet is reported (under a generous deadline), then enough rounds
            # to see its effect and that it is not reported twice.
            async with asyncio.timeout(40):
                while source.counters["events"] < 1:
                    batches.append(await source.poll_once())
                    await asyncio.sleep(0.2)
                for _ in range(8):
                    batches.append(await source.poll_once())
                    await asyncio.sleep(0.2)
    batch = ReadingBatch.concat(batches)
    flagged = [r for r in range(len(batch)) if batch.events[r] & MeterEvent.MAGNETIC_FIELD]
    assert len(flagged) == 1
    # Under the magnet the meter registers half the current (the scenario's magnitude 0.5).
    before = batch.col("i1")[: flagged[0]]
    after = batch.col("i1")[flagged[0] + 2 :]
    assert len(before)
    assert len(after)
    assert after.mean() < 0.7 * before.mean()
