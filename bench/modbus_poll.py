"""Modbus polling: meterguard's ModbusSource vs a bare pymodbus loop doing the same reads.

A separate process serves 50 simulated gateways with 20 meters each (1,000 meters; every
third an SDM120, the rest SDM630). Both pollers use one connection per gateway, poll the
gateways in parallel and the meters of a gateway one at a time, as fast as the bus
answers, for --seconds each; the bare loop only sends the reads and checks the answer,
meterguard also decodes, fills batches and keeps per-meter status. On a shared machine the
poller CPU per poll (time.process_time) is steadier than the wall-clock rate.

usage: python bench/modbus_poll.py [--gateways 50] [--units 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import socket
import subprocess
import sys
import time

from pymodbus.client import AsyncModbusTcpClient

from collector.modbus import ModbusSource, ModbusSourceSettings
from collector.profiles import builtin_profile, plan_requests
from meterguard.model import Meter, MeterRegistry
from meterguard.status import StatusBoard


def profile_of(unit_index: int) -> str:
    """Match simulators.modbus_gateway's main(): every third meter is single-phase."""
    return "sdm120" if unit_index % 3 == 2 else "sdm630"


async def bare(base_port: int, gateways: int, units: int, seconds: float) -> int:
    """Poll with plain pymodbus clients; return meters polled."""
    plans = {name: plan_requests(builtin_profile(name)) for name in ("sdm120", "sdm630")}
    polled = 0
    stop = time.monotonic() + seconds

    async def gateway(g: int) -> None:
        nonlocal polled
        client = AsyncModbusTcpClient("127.0.0.1", port=base_port + g, timeout=3, retries=0)
        await client.connect()
        try:
            while time.monotonic() < stop:
                for u in range(units):
                    for request in plans[profile_of(u)]:
                        response = await client.read_input_registers(
                            request.address, count=request.count, device_id=u + 1
                        )
                        if response.isError() or len(response.registers) != request.count:
                            raise RuntimeError("bad answer")
                    polled += 1
        finally:
            client.close()

    await asyncio.gather(*(gateway(g) for g in range(gateways)))
    return polled


async def meterguard(base_port: int, gateways: int, units: int, seconds: float) -> int:
    """Poll with one ModbusSource per gateway; return readings delivered in batches."""
    meters = [
        Meter(id=f"G{g:03d}U{u + 1:03d}", service="3p4w", nominal_v=230)
        for g in range(gateways)
        for u in range(units)
    ]
    registry = MeterRegistry(meters)
    status = StatusBoard()
    readings = 0
    stop = time.monotonic() + seconds

    async def gateway(g: int) -> None:
        nonlocal readings
        settings = ModbusSourceSettings.model_validate(
            {
                "name": f"gw{g}",
                "port": base_port + g,
                "interval_s": 0.001,  # always due: poll as fast as the bus answers
                "timeout_s": 3.0,
                "retries": 0,
                "devices": [
                    {"meter": f"G{g:03d}U{u + 1:03d}", "unit": u + 1, "profile": profile_of(u)}
                    for u in range(units)
                ],
            }
        )
        async with ModbusSource(settings, registry, status) as source:
            batches = source.batches()
            while time.monotonic() < stop:
                batch = await anext(batches)  # never `x += await ...`: other tasks run between
                readings += len(batch)
            await batches.aclose()

    await asyncio.gather(*(gateway(g) for g in range(gateways)))
    failing = status.summary()["failing"]
    if failing:
        raise RuntimeError(f"{failing} meters failing")
    return readings


def wait_port(port: int) -> None:
    """Wait until the simulator accepts connections on the port."""
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("simulator did not start")


def main() -> None:
    """Start the simulated gateways, run both pollers alternately and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=50)
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=15020)
    a = ap.parse_args()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "simulators.modbus_gateway", "--port", str(a.port)),
            *("--gateways", str(a.gateways), "--units", str(a.units)),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(a.port + a.gateways - 1)
        rates: dict[str, list[float]] = {"bare": [], "meterguard": []}
        cpu: dict[str, list[float]] = {"bare": [], "meterguard": []}
        for _ in range(3):  # alternate, so drift on a shared machine hits both
            for name, poll in (("bare", bare), ("meterguard", meterguard)):
                started = time.process_time()
                n = asyncio.run(poll(a.port, a.gateways, a.units, a.seconds))
                used = time.process_time() - started
                rates[name].append(n / a.seconds)
                cpu[name].append(used / n * 1e6)
                print(
                    f"{name:10s} {n / a.seconds:8.0f} meters polled/s, "
                    f"{used / n * 1e6:5.1f} us poller CPU per poll",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)
    b, m = max(rates["bare"]), max(rates["meterguard"])
    print(
        f"\n{platform.node()} python {platform.python_version()}, {a.gateways} gateways x "
        f"{a.units} meters, best of 3 x {a.seconds:.0f} s each:\n"
        f"bare pymodbus {b:.0f} polls/s, meterguard {m:.0f} readings/s, ratio {m / b:.2f}\n"
        f"poller CPU per poll: bare {min(cpu['bare']):.1f} us, meterguard "
        f"{min(cpu['meterguard']):.1f} us (ratio {min(cpu['bare']) / min(cpu['meterguard']):.2f})"
    )


if __name__ == "__main__":
    main()
