"""DLMS reads per second: DlmsSource against the pydlms simulator process.

The simulator (GPL pydlms-client, its own process) serves --meters meters, one TCP port
each; the source keeps one association per meter open and polls all meters in parallel
as fast as they answer, reading every register of DOMAIN.md §5 (get-with-list, at most
10 attributes per request) plus the fraud log's entry count once a second.

usage: python bench/dlms_reads.py [--meters 20] [--seconds 10] [--hdlc]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import sys
import time

from collector.dlms import DlmsSource
from meterguard.model import Meter, MeterRegistry
from meterguard.settings import DlmsSourceSettings
from meterguard.status import StatusBoard


async def run(port: int, meters: int, seconds: float, transport: str) -> tuple[int, int, float]:
    fleet = [
        Meter(id=f"D{k:04d}", service="1p2w" if k % 3 == 2 else "3p4w", nominal_v=230)
        for k in range(meters)
    ]
    settings = DlmsSourceSettings.model_validate(
        {
            "name": "bench",
            "transport": transport,
            "event_interval_s": 1.0,
            "devices": [{"meter": m.id, "port": port + k} for k, m in enumerate(fleet)],
        }
    )
    source = DlmsSource(settings, MeterRegistry(fleet), StatusBoard())
    async with source:
        await source.poll_once()  # associate (and read scaler/unit) outside the clock
        values = readings = 0
        cpu = time.process_time()
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            batch = await source.poll_once()
            readings += len(batch)
            values += int((batch.values == batch.values).sum())  # measured (not NaN) cells
        cpu = time.process_time() - cpu
    if source.counters["failures"]:
        raise RuntimeError(f"{source.counters['failures']} failed polls")
    return readings, values, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=16059)
    ap.add_argument("--hdlc", action="store_true")
    a = ap.parse_args()
    args = [sys.executable, "-m", "simulators.dlms_server", "--port", str(a.port)]
    args += ["--meters", str(a.meters)] + (["--hdlc"] if a.hdlc else [])
    server = subprocess.Popen(args, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        server.stdout.readline()
        transport = "hdlc" if a.hdlc else "wrapper"
        readings, values, cpu = asyncio.run(run(a.port, a.meters, a.seconds, transport))
    finally:
        server.terminate()
        server.wait(10)
    print(
        f"{platform.node()} python {platform.python_version()}, {a.meters} meters, {transport}, "
        f"{a.seconds:.0f} s:\n{readings / a.seconds:.0f} meter polls/s, "
        f"{values / a.seconds:.0f} register values/s, "
        f"client CPU {cpu / readings * 1e3:.2f} ms per poll"
    )


if __name__ == "__main__":
    main()
