"""DLMS reads per second: DlmsSource vs a bare gurux get-with-list loop, same simulator.

The simulator (GPL pydlms-client, its own process) serves --meters meters, one TCP port
each. Both clients keep one association per meter open and poll all meters in parallel
as fast as they answer, reading every register of docs/PHYSICS.md (DLMS) the meter has
(get-with-list, at most 10 attributes per request). The bare loop is gurux-dlms on
asyncio streams and nothing else: one task per meter sends the requests and lets gurux
parse the answers. meterguard's DlmsSource also scales and folds the values into
ReadingBatches, keeps per-meter status, reads the fraud log's entry count once a second
and works in rounds (each round waits up to timeout_s for every meter). The two runs
alternate (--rounds), the best of each is compared, and the client CPU per poll
(time.process_time) is printed as well, as it is steadier on a shared machine.

usage: python bench/dlms_reads.py [--meters 20] [--seconds 10] [--rounds 2] [--hdlc]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import sys
import time
from typing import Any

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXDLMSException, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType
from gurux_dlms.objects import GXDLMSRegister

from collector.dlms import DlmsSourceSettings
from collector.dlms_gurux import OBIS_QUANTITIES, READ_LIST_MAX, TOTAL_POWER, DlmsSource
from meterguard.model import Meter, MeterRegistry
from meterguard.status import StatusBoard, failure_count


def fleet_of(meters: int) -> list[Meter]:
    """Return the simulator's fleet: every third meter single-phase."""
    return [
        Meter(id=f"D{k:04d}", service="1p2w" if k % 3 == 2 else "3p4w", nominal_v=230)
        for k in range(meters)
    ]


async def meterguard(
    port: int, meters: int, seconds: float, transport: str
) -> tuple[int, int, float]:
    """Poll with DlmsSource; return meter polls, register values and client CPU seconds."""
    fleet = fleet_of(meters)
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
        first = await source.poll_once()  # associate (and read scaler/unit) outside the clock
        while len(first) < meters and failure_count(source.counters) == 0:
            first = await source.poll_once()
        values = readings = 0
        cpu = time.process_time()
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            batch = await source.poll_once()
            readings += len(batch)
            values += int((batch.values == batch.values).sum())  # measured (not NaN) cells
        cpu = time.process_time() - cpu
    if failure_count(source.counters):
        raise RuntimeError(f"failed polls: {dict(source.counters)}")
    return readings, values, cpu


class BareMeter:
    """One association made and used with gurux alone: frames out, frames in, parse."""

    def __init__(self, port: int, hdlc: bool) -> None:
        self.port = port
        self.client = GXDLMSClient(
            True,
            16,
            GXDLMSClient.getServerAddress(1, 17) if hdlc else 1,
            Authentication.NONE,
            None,
            InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER,
        )
        self.registers: list[GXDLMSRegister] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, data: Any, reply: GXReplyData) -> None:
        """Send one frame (or each of a list) and read until gurux has the whole reply."""
        assert self.reader is not None
        assert self.writer is not None
        frames = data if isinstance(data, list) else [data]
        for frame in frames:
            reply.clear()
            while True:
                self.writer.write(bytes(frame))
                received = GXByteBuffer()
                notify = GXReplyData()
                while not self.client.getData(received, reply, notify):
                    received.set(await self.reader.read(4096))
                if reply.error:
                    raise GXDLMSException(reply.error)
                if not reply.isMoreData():
                    break
                frame = self.client.receiverReady(reply)

    async def associate(self) -> None:
        """Connect, associate and find out which registers the meter has."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        reply = GXReplyData()
        snrm = self.client.snrmRequest()
        if snrm:
            await self.exchange(snrm, reply)
            self.client.parseUAResponse(reply.data)
        await self.exchange(self.client.aarqRequest(), reply)
        self.client.parseAareResponse(reply.data)
        for obis in (*OBIS_QUANTITIES, *TOTAL_POWER):
            register = GXDLMSRegister(obis)
            try:
                await self.exchange(self.client.read(register, 3)[0], reply)
            except GXDLMSException:
                continue
            self.client.updateValue(register, 3, reply.value)
            self.registers.append(register)

    async def poll(self) -> int:
        """Read every register's value by get-with-list; return how many values came."""
        items = [(r, 2) for r in self.registers]
        got = 0
        for start in range(0, len(items), READ_LIST_MAX):
            chunk = items[start : start + READ_LIST_MAX]
            values: list[Any] = []
            for frame in self.client.readList(chunk):
                reply = GXReplyData()
                await self.exchange(frame, reply)
                values.extend(reply.value or [])
            self.client.updateValues(chunk, values)
            got += len(values)
        return got

    def close(self) -> None:
        """Drop the connection."""
        if self.writer is not None:
            self.writer.close()


async def bare(port: int, meters: int, seconds: float, hdlc: bool) -> tuple[int, int, float]:
    """Poll with bare gurux loops; return meter polls, register values and CPU seconds."""
    clients = [BareMeter(port + k, hdlc) for k in range(meters)]
    await asyncio.gather(*(c.associate() for c in clients))
    polls = values = 0
    stop = time.monotonic() + seconds

    async def loop(client: BareMeter) -> None:
        nonlocal polls, values
        while time.monotonic() < stop:
            got = await client.poll()  # never `x += await ...`: other tasks run between
            values += got
            polls += 1

    cpu = time.process_time()
    await asyncio.gather(*(loop(c) for c in clients))
    cpu = time.process_time() - cpu
    for client in clients:
        client.close()
    return polls, values, cpu


def main() -> None:
    """Run both clients against one simulator process, alternating, and print the ratio."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--meters", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=16059)
    ap.add_argument("--hdlc", action="store_true")
    a = ap.parse_args()
    args = [sys.executable, "-m", "simulators.dlms_server", "--port", str(a.port)]
    args += ["--meters", str(a.meters)] + (["--hdlc"] if a.hdlc else [])
    server = subprocess.Popen(args, stdout=subprocess.PIPE)
    transport = "hdlc" if a.hdlc else "wrapper"
    rates: dict[str, list[float]] = {"bare": [], "meterguard": []}
    cpu_per_poll: dict[str, list[float]] = {"bare": [], "meterguard": []}
    try:
        assert server.stdout is not None
        server.stdout.readline()
        for _ in range(a.rounds):
            for name in ("bare", "meterguard"):
                if name == "bare":
                    polls, values, cpu = asyncio.run(bare(a.port, a.meters, a.seconds, a.hdlc))
                else:
                    polls, values, cpu = asyncio.run(
                        meterguard(a.port, a.meters, a.seconds, transport)
                    )
                rates[name].append(polls / a.seconds)
                cpu_per_poll[name].append(cpu / polls * 1e3)
                print(
                    f"{name:10s} {polls / a.seconds:7.0f} meter polls/s, "
                    f"{values / a.seconds:7.0f} register values/s, "
                    f"client CPU {cpu / polls * 1e3:.2f} ms per poll",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)
    b, m = max(rates["bare"]), max(rates["meterguard"])
    cb, cm = min(cpu_per_poll["bare"]), min(cpu_per_poll["meterguard"])
    print(
        f"\n{platform.node()} python {platform.python_version()}, {a.meters} meters, "
        f"{transport}, best of {a.rounds} x {a.seconds:.0f} s:\n"
        f"bare gurux {b:.0f} polls/s, meterguard {m:.0f} polls/s, ratio {m / b:.2f}; "
        f"client CPU per poll: bare {cb:.2f} ms, meterguard {cm:.2f} ms"
    )


if __name__ == "__main__":
    main()
