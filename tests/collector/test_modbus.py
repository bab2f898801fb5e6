"""The Modbus source against the simulated gateway, over real TCP."""

import asyncio
import contextlib
import math

import pytest

from collector.modbus import ModbusDeviceSettings, ModbusSource, ModbusSourceSettings
from meterguard.model import Meter, MeterRegistry
from meterguard.status import StatusBoard
from simulators.meter import Reversal, SimulatedMeter
from simulators.modbus_gateway import ModbusGateway
from tests.conftest import free_port

FLEET = [
    Meter(id="T1", service="3p4w", nominal_v=230),
    Meter(id="S1", service="1p2w", nominal_v=230),
    Meter(id="R1", service="3p4w", nominal_v=230),
]


def _sims() -> list[SimulatedMeter]:
    sims = [SimulatedMeter(meter=m, seed=i, base_kw=3.0) for i, m in enumerate(FLEET)]
    sims[2].reversal = Reversal(phase=3)
    return sims


def _source(
    port: int,
    registry: MeterRegistry,
    status: StatusBoard,
    extra_units: list[ModbusDeviceSettings] | None = None,
    framer: str = "socket",
) -> ModbusSource:
    devices = [
        ModbusDeviceSettings(meter="T1", unit=1, profile="sdm630"),
        ModbusDeviceSettings(meter="S1", unit=2, profile="sdm120"),
        ModbusDeviceSettings(meter="R1", unit=3, profile="sdm630"),
    ] + (extra_units or [])
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "interval_s": 0.2,
            "timeout_s": 0.5,
            "retries": 0,
            "framer": framer,
            "devices": devices,
        }
    )
    return ModbusSource(settings, registry, status)


@pytest.mark.parametrize("framer", ["socket", "rtu"])
async def test_poll_reads_every_unit_with_consistent_physics(framer: str) -> None:
    registry = MeterRegistry(FLEET)
    status = StatusBoard()
    port = free_port()
    units = list(enumerate(_sims(), start=1))
    async with (
        ModbusGateway(units, port=port, framer=framer) as gateway,
        _source(port, registry, status, framer=framer) as source,
    ):
        assert await source.ensure_connected()
        batch = await source.poll_once()
    assert batch.slot.tolist() == [0, 1, 2]
    assert gateway.requests_served == 5  # two reads per SDM630, one per SDM120
    for row in range(3):
        phases = 1 if row == 1 else 3
        for k in range(1, phases + 1):
            v, i = batch.col(f"v{k}")[row], batch.col(f"i{k}")[row]
            p, q = batch.col(f"p{k}")[row], batch.col(f"q{k}")[row]
            assert 200 < v < 250
            # Apparent power from the meter's own V and I matches sqrt(P^2 + Q^2).
            assert math.hypot(p, q) == pytest.approx(v * i, rel=1e-3)
    assert math.isnan(batch.col("v2")[1])
    assert math.isnan(batch.col("in")[1])
    assert batch.col("p3")[2] < 0 < batch.col("p1")[2]
    assert batch.col("f")[0] == pytest.approx(50.0, abs=0.1)
    assert status.summary() == {"polled": 3, "online": 3, "failing": 0}


async def test_missing_unit_fails_alone_and_is_counted() -> None:
    registry = MeterRegistry([*FLEET, Meter(id="GHOST", service="3p4w", nominal_v=230)])
    status = StatusBoard()
    port = free_port()
    ghost = [ModbusDeviceSettings(meter="GHOST", unit=9, profile="sdm630")]
    async with (
        ModbusGateway(list(enumerate(_sims(), start=1)), port=port),
        _source(port, registry, status, ghost) as source,
    ):
        assert await source.ensure_connected()
        first = await source.poll_once()
        second = await source.poll_once()
    assert first.slot.tolist() == [0, 1, 2]
    assert second.slot.tolist() == [0, 1, 2]
    ghost_status = status.get("GHOST")
    assert ghost_status is not None
    assert not ghost_status.online
    assert ghost_status.errors == 2
    assert ghost_status.consecutive_failures == 2
    # The gateway answers for a unit nobody has: exception 0x0B, target failed to respond.
    assert ghost_status.last_error == "gateway: target device did not respond (exception 11)"
    assert source.counters["gateway"] == 2
    assert source.counters["device_exception"] == 0
    assert ghost_status.last_failure == "gateway"
    assert ghost_status.last_exception_code == 11
    assert status.summary()["online"] == 3


async def test_source_waits_for_a_late_gateway_then_streams() -> None:
    registry = MeterRegistry(FLEET)
    port = free_port()
    source = _source(port, registry, StatusBoard())

    async def first_batch() -> int:
        async with source:
            async for batch in source.batches():
                return len(batch)
        return 0

    reader = asyncio.create_task(first_batch())
    # The gateway is not up yet: the source keeps retrying, with backoff.
    async with asyncio.timeout(10):
        while source.counters["backoffs"] < 2:
            await asyncio.sleep(0.02)
    assert not reader.done()
    assert source.counters["connect_failures"] >= 2
    async with ModbusGateway(list(enumerate(_sims(), start=1)), port=port):
        assert await asyncio.wait_for(reader, timeout=10) == 3


async def test_a_source_entered_again_after_it_exited_polls_on() -> None:
    # What the service does when it restarts a failed source: the same object again.
    registry = MeterRegistry(FLEET)
    port = free_port()
    source = _source(port, registry, StatusBoard())
    async with ModbusGateway(list(enumerate(_sims(), start=1)), port=port):
        async with source:
            first = await anext(source.batches())
        async with source:
            second = await anext(source.batches())
    assert len(first) == len(second) == 3
    assert source.health.reachable is True


async def test_a_cancel_pymodbus_drops_with_an_answer_still_stops_the_poll() -> None:
    # Python 3.11's asyncio.wait_for, with which pymodbus awaits each answer, returns the
    # answer and drops a cancel that comes at the same moment; the race is made certain
    # here by a read that takes the cancel and answers anyway.
    registry = MeterRegistry(FLEET)
    port = free_port()
    async with (
        ModbusGateway(list(enumerate(_sims(), start=1)), port=port),
        _source(port, registry, StatusBoard()) as source,
    ):
        assert await source.ensure_connected()
        client = source._client
        real = client.read_input_registers

        async def answered_despite_a_cancel(*args: object, **kwargs: object) -> object:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        client.read_input_registers = answered_despite_a_cancel  # type: ignore[method-assign,assignment]
        poll = asyncio.create_task(source.poll_once())
        await asyncio.wait({poll}, timeout=5)
        assert poll.cancelled()
