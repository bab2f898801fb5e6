"""The Modbus source against misbehaving simulated gateways, over real TCP."""

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.modbus import ModbusSource, ModbusSourceSettings
from collector.registry import typed_sources
from meterguard.model import Meter, MeterRegistry
from meterguard.settings import Settings
from meterguard.status import StatusBoard, failure_count
from simulators.meter import SimulatedMeter
from simulators.modbus_gateway import Fault, ModbusGateway
from tests.conftest import free_port

FLEET = [Meter(id=f"M{u}", service="3p4w", nominal_v=230) for u in range(1, 5)]


def _gateway(port: int, framer: str = "socket", delay: float = 0.0) -> ModbusGateway:
    sims = [SimulatedMeter(meter=m, seed=i, base_kw=2.0) for i, m in enumerate(FLEET)]
    return ModbusGateway(
        list(enumerate(sims, start=1)), port=port, framer=framer, request_delay_s=delay
    )


def _source(
    port: int, status: StatusBoard, framer: str = "socket", **extra: object
) -> ModbusSource:
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "framer": framer,
            "interval_s": 0.05,
            "timeout_s": 0.3,
            "retries": 0,
            "devices": [{"meter": m.id, "unit": u} for u, m in enumerate(FLEET, start=1)],
            **extra,
        }
    )
    return ModbusSource(settings, MeterRegistry(FLEET), status)


@pytest.mark.parametrize("framer", ["socket", "rtu"])
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.SILENT, "timeout"),
        (Fault.EXCEPTION, "device_exception"),
        (Fault.SHORT, "malformed"),
        (Fault.RESET, "unreachable"),
    ],
)
async def test_one_faulty_unit_fails_alone_and_recovers(
    framer: str, fault: Fault, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status = StatusBoard()
    port = free_port()
    async with _gateway(port, framer) as gateway, _source(port, status, framer) as source:
        gateway.set_fault(2, fault)
        first = await source.poll_once()
        asked_first = Counter(unit for unit, _, _ in gateway.bus_log)
        second = await source.poll_once()
        gateway.set_fault(2, Fault.NONE)
        third = await source.poll_once()
    # The other three meters answered both times.
    assert first.slot.tolist() == [0, 2, 3]
    assert second.slot.tolist() == [0, 2, 3]
    assert third.slot.tolist() == [0, 1, 2, 3]
    # Retries 0: the faulty unit was asked once (its poll stops at the first failed read),
    # the healthy ones their two SDM630 reads each; nobody waited for anybody twice.
    assert asked_first == {1: 2, 2: 1, 3: 2, 4: 2}
    m2 = status.get("M2")
    assert m2 is not None
    assert m2.errors == 2
    assert m2.online
    assert m2.last_error is not None
    assert m2.last_error.split(":")[0] == kind
    assert m2.last_failure == kind
    assert m2.failures == {kind: 2}
    assert source.counters[kind] == 2
    assert failure_count(source.counters) == 2
    assert status.summary() == {"polled": 4, "online": 4, "failing": 0}
    # Two failed polls, one warning (the first); pymodbus's own error lines are filtered.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"meter M2 (unit 2 on gw) failed: {m2.last_error}"]
    assert any("M2 (unit 2 on gw) answers again" in r.getMessage() for r in caplog.records)


async def test_retries_resend_a_timed_out_request_to_that_meter_only() -> None:
    status = StatusBoard()
    port = free_port()
    async with (
        _gateway(port) as gateway,
        _source(port, status, timeout_s=0.1, retries=2) as source,
    ):
        gateway.set_fault(3, Fault.SILENT)
        batch = await source.poll_once()
    assert batch.slot.tolist() == [0, 1, 3]
    asked = Counter(unit for unit, _, _ in gateway.bus_log)
    assert asked == {1: 2, 2: 2, 3: 3, 4: 2}  # 1 + 2 retries for the silent unit
    m3 = status.get("M3")
    assert m3 is not None
    assert m3.last_error is not None
    assert m3.last_error.startswith("timeout")


async def test_a_cancelled_poll_does_not_sit_out_the_pause() -> None:
    port = free_port()
    source = _source(port, StatusBoard(), timeout_s=30.0, pause_s=60.0)
    async with _gateway(port) as gateway, source:
        gateway.set_fault(1, Fault.SILENT)
        poll = asyncio.create_task(source.poll_once())
        # The request reached the bus and will never be answered: cancel the waiting read.
        await _until(lambda: len(gateway.bus_log) >= 1)
        poll.cancel()
        # A pause in a `finally` would hold the cancelled poll for 60 s.
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(poll, timeout=5.0)
    assert len(gateway.bus_log) == 1


async def _until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Wait until `condition()` holds; fail the test after a generous deadline."""
    async with asyncio.timeout(deadline_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_dead_gateway_is_logged_once_backs_off_and_recovery_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="collector.modbus")
    port = free_port()
    source = _source(port, StatusBoard(), backoff_max_s=0.3)
    got: list[int] = []

    async def consume() -> None:
        async with source:
            async for batch in source.batches():
                got.append(len(batch))
                if len(got) >= 2:
                    return

    task = asyncio.create_task(consume())
    # Several reconnect attempts against a closed port, each after a backoff.
    await _until(lambda: source.counters["connect_failures"] >= 3)
    assert source.counters["backoffs"] >= 2
    async with _gateway(port):
        await asyncio.wait_for(task, timeout=10)
    down = [r for r in caplog.records if "retrying with backoff" in r.getMessage()]
    up = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(down) == 1
    assert len(up) == 1
    assert got == [4, 4]


async def test_all_units_silent_backs_off_the_gateway() -> None:
    port = free_port()
    status = StatusBoard()
    async with _gateway(port) as gateway, _source(port, status, backoff_max_s=5.0) as source:
        for unit in range(1, 5):
            gateway.set_fault(unit, Fault.SILENT)
        batches = source.batches()
        poll = asyncio.ensure_future(anext(batches))
        m1 = status.get("M1")
        assert m1 is not None
        await _until(lambda: m1.errors >= 2)
        # Every silent pass ends in a backoff and a fresh connection, not in another pass.
        assert source.counters["backoffs"] >= m1.errors - 1
        assert source.counters["timeout"] >= 4 * (m1.errors - 1)
        for unit in range(1, 5):
            gateway.set_fault(unit, Fault.NONE)
        batch = await asyncio.wait_for(poll, timeout=15)
        # A pass that straddled the switch may miss some meters; the next one has them all.
        if len(batch) < 4:
            batch = await asyncio.wait_for(anext(batches), timeout=5)
        await batches.aclose()
    assert len(batch) == 4


async def test_per_meter_interval_and_pause() -> None:
    port = free_port()
    status = StatusBoard()
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "interval_s": 0.2,
            "timeout_s": 0.5,
            "pause_s": 0.01,
            "devices": [
                {"meter": "M1", "unit": 1},
                {"meter": "M2", "unit": 2, "interval_s": 1.0},
            ],
        }
    )
    async with (
        _gateway(port) as gateway,
        ModbusSource(settings, MeterRegistry(FLEET), status) as source,
    ):
        slow = status.meter("M2", "gw")
        batches = source.batches()
        async with asyncio.timeout(20):
            while slow.readings < 5:
                await anext(batches)
        await batches.aclose()
    fast = status.meter("M1", "gw")
    # Five fast polls per slow one (0.2 s against 1 s); a loaded machine's slower rounds
    # may cost the fast meter a few, never make the two alike.
    assert 2.5 <= fast.readings / slow.readings <= 6.0
    # Two requests per SDM630 poll, each followed by the pause before the next goes out.
    assert source.counters["requests"] == 2 * (fast.readings + slow.readings)
    log = list(gateway.bus_log)
    assert len(log) == source.counters["requests"]
    gaps = [nxt[1] - prev[2] for prev, nxt in itertools.pairwise(log)]
    assert min(gaps) >= 0.01


def test_user_profile_file_is_loaded_by_path_relative_to_config(tmp_path: Path) -> None:
    from meterguard.settings import load_settings

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "mini.toml").write_text(
        'name = "mini"\nfunction = 4\nregisters = [\n'
        '  { quantity = "v1", address = 0 },\n'
        '  { quantity = "f", address = 0x46 },\n'
        "]\n"
    )
    (tmp_path / "meterguard.toml").write_text(
        # A single-phase map: it fits a 1p2w meter only (typing the sources checks that).
        '[[meters]]\nid = "M1"\nservice = "1p2w"\nnominal_v = 230\n'
        '[[sources]]\ntype = "modbus"\nname = "gw"\n'
        '[[sources.devices]]\nmeter = "M1"\nunit = 1\nprofile = "profiles/mini.toml"\n'
    )
    settings = load_settings(tmp_path / "meterguard.toml")
    [source_settings] = typed_sources(settings, MeterRegistry(settings.all_meters()))
    assert isinstance(source_settings, ModbusSourceSettings)
    profile = source_settings.devices[0].profile
    assert profile is not None
    assert Path(profile) == tmp_path / "profiles" / "mini.toml"
    assert isinstance(settings, Settings)


async def test_user_profile_reads_from_the_simulator(tmp_path: Path) -> None:
    profile = tmp_path / "mini.toml"
    profile.write_text(
        'name = "mini"\nfunction = 4\nmax_gap = 0\nregisters = [\n'
        '  { quantity = "v1", address = 0 },\n'
        '  { quantity = "f", address = 0x46 },\n'
        "]\n"
    )
    port = free_port()
    settings = ModbusSourceSettings.model_validate(
        {
            "name": "gw",
            "port": port,
            "devices": [{"meter": "M1", "unit": 1, "profile": str(profile)}],
        }
    )
    async with _gateway(port), ModbusSource(settings, MeterRegistry(FLEET), StatusBoard()) as src:
        batch = await src.poll_once()
    assert 200 < batch.col("v1")[0] < 250
    assert batch.col("f")[0] == pytest.approx(50.0, abs=0.1)
    assert src.counters["requests"] == 2  # max_gap 0: two separate reads


def test_the_documented_profile_example_loads_and_plans(tmp_path: Path) -> None:
    from collector.profiles import load_profile_file, plan_requests

    doc = (Path(__file__).parents[2] / "docs" / "COLLECTORS.md").read_text()
    block = doc.split("# profiles/acme-em3.toml")[1].split("\n", 1)[1].split("```")[0]
    path = tmp_path / "acme-em3.toml"
    path.write_text(block)
    profile = load_profile_file(path)
    requests = plan_requests(profile)
    # 03: 0..2 and 3..4 merge (gap 0), 10 within max_gap 10 of 5; 100 and 200 apart; f on 04.
    assert [(r.function, r.address, r.count) for r in requests] == [
        (3, 0, 12),
        (3, 100, 2),
        (4, 200, 2),
    ]


async def test_the_bus_answers_one_request_at_a_time_at_line_speed() -> None:
    # Two clients on one gateway at 9600 baud: an SDM630 poll (78 + 2 registers) needs
    # about (8 + 5 + 152 + 7) * 11 / 9600 + (8 + 5 + 4 + 7) * 11 / 9600 = 0.22 s of bus time.
    port = free_port()
    sims = [SimulatedMeter(meter=m, seed=i) for i, m in enumerate(FLEET)]
    async with ModbusGateway(list(enumerate(sims, start=1)), port=port, baud=9600) as gateway:
        a = _source(port, StatusBoard(), timeout_s=2.0)
        b = _source(port, StatusBoard(), timeout_s=2.0)
        async with a, b:
            first, second = await asyncio.gather(
                a.poll_once([FLEET[0].id]), b.poll_once([FLEET[1].id])
            )
    assert len(first) == len(second) == 1
    log = sorted(gateway.bus_log, key=lambda entry: entry[1])
    assert sorted(unit for unit, _, _ in log) == [1, 1, 2, 2]
    # Serialised on the bus: no request starts before the one ahead of it has ended,
    # and each holds the bus at least as long as its frames take at 9600 baud.
    for prev, nxt in itertools.pairwise(log):
        assert nxt[1] >= prev[2]
    assert all(end - start >= 0.02 for _, start, end in log)
