"""The vectorised fleet read one meter at a time, and served over Modbus TCP."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators.live import LiveFleet, LiveMeter
from simulators.modbus_gateway import ModbusGateway
from simulators.physics import FleetModel
from simulators.population import PHASE_ANGLES
from simulators.scenario import Confounder
from tests.conftest import free_port
from tests.simulators.helpers import INCIDENT_START, TIMES, incident, pick, scenario


def _phasor_sum(values: dict[str, float], angles: np.ndarray) -> float:
    n = len(angles)
    i = np.array([values[f"i{k}"] for k in range(1, n + 1)])
    p = np.array([values[f"p{k}"] for k in range(1, n + 1)])
    q = np.array([values[f"q{k}"] for k in range(1, n + 1)])
    return float(abs((i * np.exp(1j * (angles - np.arctan2(q, p)))).sum()))


def test_live_reads_agree_with_the_offline_frames_and_the_physics() -> None:
    fleet = LiveFleet(FleetModel(scenario()), resolution_s=60.0)
    offline = FleetModel(scenario()).compute(TIMES[:30])
    pop = fleet.model.pop
    last: dict[str, float] = {}
    for row, t in enumerate(TIMES[:30]):
        for lm in fleet.meters:
            values = lm.read(float(t) + 5.0)  # within the same minute
            n = lm.meter.phases
            for k in range(1, n + 1):
                s = np.hypot(values[f"p{k}"], values[f"q{k}"])
                assert abs(s - values[f"v{k}"] * values[f"i{k}"]) < 1e-6 * max(s, 1.0)
            if lm.meter.role == "feeder":
                np.testing.assert_allclose(values["p1"], offline.fp[row, lm.key.index, 0])
                continue
            i = lm.key.index
            np.testing.assert_allclose(values["v1"], offline.v[row, i, 0])
            np.testing.assert_allclose(values["e_imp"], offline.e_imp[row, i])
            assert values["e_imp"] >= last.get(lm.meter.id, 0.0)
            last[lm.meter.id] = values["e_imp"]
            assert set(values) >= {"v1", "i1", "p1", "q1", "e_imp", "e_exp", "f"}
            assert ("v2" in values) == (n == 3)
            if lm.measures_neutral or n == 3:
                angles = PHASE_ANGLES[pop.phase_of[i, :n]]
                assert abs(values["in"] - _phasor_sum(values, angles)) < 0.15 + 0.01 * values["in"]
            else:
                assert "in" not in values


def test_live_meter_reports_its_events_once_and_goes_silent_when_silenced() -> None:
    base = FleetModel(scenario())
    magnet = pick(base, three=True)
    quiet = pick(base, three=False)
    sc = scenario([incident("magnet", magnet, magnitude=0.5), incident("silenced", quiet)])
    fleet = LiveFleet(FleetModel(sc), resolution_s=1.0)
    m, s = fleet.meter(magnet), fleet.meter(quiet)
    assert m.events(INCIDENT_START - 120) == []
    assert m.events(INCIDENT_START - 60) == []
    assert m.events(INCIDENT_START + 30) == ["magnetic_field"]
    assert m.events(INCIDENT_START + 60) == []
    assert s.online(INCIDENT_START - 60)
    assert not s.online(INCIDENT_START + 60)
    assert m.online(INCIDENT_START + 60)


def _float(regs: Sequence[int], offset: int) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", regs[offset], regs[offset + 1]))[0]
    return value


async def test_fleet_served_over_modbus_reads_back_with_an_independent_client() -> None:
    fleet = LiveFleet(FleetModel(scenario()), resolution_s=60.0)
    now = [float(TIMES[10])]
    three = [lm for lm in fleet.meters if lm.meter.phases == 3 and lm.measures_neutral][:3]
    single = [lm for lm in fleet.meters if lm.meter.phases == 1][:2]
    units = list(enumerate(three + single, start=1))
    port = free_port()
    last_e: dict[int, float] = {}
    async with ModbusGateway(units, port=port, clock=lambda: now[0]):
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        assert await client.connect()
        try:
            for _ in range(3):
                for unit, lm in units:
                    expected = lm.read(now[0])
                    # Eastron SDM630/SDM120: input registers, float32 high word first.
                    reply = await client.read_input_registers(0, count=0x4C, device_id=unit)
                    regs = reply.registers
                    phases = lm.meter.phases
                    v = np.array([_float(regs, 0x00 + 2 * k) for k in range(phases)])
                    i = np.array([_float(regs, 0x06 + 2 * k) for k in range(phases)])
                    p = np.array([_float(regs, 0x0C + 2 * k) for k in range(phases)])
                    q = np.array([_float(regs, 0x18 + 2 * k) for k in range(phases)])
                    assert abs(v[0] - expected["v1"]) < 1e-3 * expected["v1"]
                    assert abs(p[0] - expected["p1"]) < 1e-3 * abs(expected["p1"]) + 0.1
                    np.testing.assert_allclose(np.hypot(p, q), v * i, rtol=1e-3, atol=0.5)
                    e_imp = _float(regs, 0x48)
                    assert abs(e_imp - expected["e_imp"]) < 1e-4 * expected["e_imp"]
                    assert e_imp >= last_e.get(unit, 0.0)
                    last_e[unit] = e_imp
                    if phases == 3:
                        # Neutral current (0xE0) = phasor sum of the phase currents.
                        reply = await client.read_input_registers(0xE0, count=2, device_id=unit)
                        neutral = _float(reply.registers, 0)
                        angles = PHASE_ANGLES - np.arctan2(q, p)
                        phasor = float(abs((i * np.exp(1j * angles)).sum()))
                        assert abs(neutral - phasor) < 0.15 + 0.01 * neutral
                now[0] += 900.0
        finally:
            client.close()
    assert all(e > 0 for e in last_e.values())


def test_outage_events_reach_every_meter_of_the_transformer_with_their_times() -> None:
    c = Confounder(kind="outage", start_s=INCIDENT_START, end_s=INCIDENT_START + 1800.0,
                   transformer="T002")  # fmt: skip
    fleet = LiveFleet(FleetModel(scenario(confounders=[c])))
    on = [lm for lm in fleet.meters if lm.meter.transformer == "T002"]
    off = [lm for lm in fleet.meters if lm.meter.transformer != "T002"]
    for lm in on:
        log = lm.event_log(INCIDENT_START - 60.0, INCIDENT_START + 3600.0)
        assert [name for _, name in log] == ["power_down", "power_up"]
        assert log[0][0] == INCIDENT_START
    # Live time only moves forward: ask every meter at one time, then at a later one.
    assert not any(lm.online(INCIDENT_START + 600.0) for lm in on)
    assert all(lm.online(INCIDENT_START + 600.0) for lm in off)
    assert all(lm.online(INCIDENT_START + 2400.0) for lm in on)
    assert all(not lm.event_log(INCIDENT_START - 60.0, INCIDENT_START + 3600.0) for lm in off)
    assert any(lm.meter.role == "feeder" for lm in on)


def test_reads_from_many_threads_see_one_consistent_fleet() -> None:
    fleet = LiveFleet(FleetModel(scenario()), resolution_s=60.0)
    times = [float(t) for t in TIMES[:40]]
    seen: dict[str, list[tuple[float, float]]] = {}

    def poll(lm: LiveMeter) -> None:
        for t in times:
            seen.setdefault(lm.meter.id, []).append((t, lm.read(t)["e_imp"]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(poll, fleet.meters))
    # Whatever order the threads ran in, the registers never ran backwards.
    for readings in seen.values():
        registers = [e for _, e in readings]
        assert registers == sorted(registers)
    reference = FleetModel(scenario()).compute(np.array(times))
    final = {lm.meter.id: lm.read(times[-1])["e_imp"] for lm in fleet.meters}
    for lm in fleet.meters:
        if lm.meter.role == "customer":
            assert final[lm.meter.id] == pytest.approx(reference.e_imp[-1, lm.key.index])
