"""A simulated Modbus gateway: several meters on one RS-485 bus behind one TCP port.

Speaks Modbus TCP (MBAP) or RTU frames tunnelled over TCP, answers function 03/04 reads
from Eastron SDM630/SDM120 register maps, serialises every request on the bus like a
real RS-485 line, and can misbehave per unit on demand (see `Fault`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

from pymodbus.framer.rtu import FramerRTU

from meterguard.model import Meter
from simulators.registers import REGISTER_SPAN, read_registers, register_image

#: Modbus exception codes the simulator sends.
ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
DEVICE_FAILURE = 0x04
TARGET_NO_RESPONSE = 0x0B


class MeterModel(Protocol):
    """What the gateway needs from a simulated meter (SimulatedMeter or a fleet adapter)."""

    @property
    def meter(self) -> Meter: ...

    def read(self, t: float) -> dict[str, float]: ...


class Fault(enum.Enum):
    """Ways a unit can misbehave, switched on per unit while the gateway runs."""

    NONE = "none"
    SILENT = "silent"  # the meter never answers (the client times out)
    EXCEPTION = "exception"  # answers with exception 04, slave device failure
    SHORT = "short"  # answers with two registers fewer than asked for
    RESET = "reset"  # the gateway drops the TCP connection


class ModbusGateway:
    """Serves simulated meters as Modbus units; one request at a time, like an RS-485 bus."""

    def __init__(
        self,
        units: Sequence[tuple[int, MeterModel]],
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
        framer: str = "socket",
        request_delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        unknown_unit: Fault = Fault.EXCEPTION,
        baud: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.framer = framer
        #: Bus time per request (RS-485 transfer plus the meter's turnaround).
        self.request_delay_s = request_delay_s
        #: With a baud rate, each request also takes the time its frames need on the line.
        self.baud = baud
        self.units = dict(units)
        self.faults: dict[int, Fault] = {}
        #: What the gateway does for a unit id nobody answers to: an exception 0x0B
        #: (gateway target failed to respond) or silence.
        self.unknown_unit = unknown_unit
        self.requests_served = 0
        #: Every request that reached the bus: (unit, start, end) on the monotonic clock;
        #: tests read it to check that the bus serves one request at a time.
        self.bus_log: deque[tuple[int, float, float]] = deque(maxlen=100_000)
        #: (client's port, unit, monotonic time) of every request: who polled whom, when.
        self.request_log: deque[tuple[int, int, float]] = deque(maxlen=100_000)
        self._clock = clock
        self._bus = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def set_fault(self, unit: int, fault: Fault) -> None:
        """Make one unit misbehave (or behave again with Fault.NONE)."""
        self.faults[unit] = fault

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, backlog=256
        )

    async def stop(self) -> None:
        """Stop listening and drop the connections."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        read_frame = self._read_rtu if self.framer == "rtu" else self._read_mbap
        peer = writer.get_extra_info("peername")
        client_port = int(peer[1]) if peer else 0
        try:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    continue  # garbage on the line: a real device stays silent
                header, unit, pdu = frame
                self.request_log.append((client_port, unit, time.monotonic()))
                answer = await self._answer(unit, pdu)
                if answer is None:
                    continue
                if answer is Fault.RESET:
                    break
                assert isinstance(answer, bytes)
                writer.write(self._frame(header, unit, answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _read_mbap(self, reader: asyncio.StreamReader) -> tuple[bytes, int, bytes] | None:
        header = await reader.readexactly(7)
        _tid, protocol, length, unit = struct.unpack(">HHHB", header)
        pdu = await reader.readexactly(length - 1)
        return (header[:2], unit, pdu) if protocol == 0 else None

    async def _read_rtu(self, reader: asyncio.StreamReader) -> tuple[bytes, int, bytes] | None:
        # Reads (03/04) are the only requests a meter gets: 8 bytes with the CRC.
        frame = await reader.readexactly(8)
        crc = FramerRTU.compute_CRC(frame[:6]).to_bytes(2, "big")
        if frame[6:] != crc:
            return None
        return b"", frame[0], frame[1:6]

    def _frame(self, header: bytes, unit: int, pdu: bytes) -> bytes:
        if self.framer == "rtu":
            body = bytes([unit]) + pdu
            return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
        return header + struct.pack(">HHB", 0, len(pdu) + 1, unit) + pdu

    async def _answer(self, unit: int, pdu: bytes) -> bytes | Fault | None:
        """Return the response PDU, None for silence, or Fault.RESET to hang up."""
        function = pdu[0]
        async with self._bus:
            started = time.monotonic()
            try:
                return await self._answer_on_bus(unit, function, pdu)
            finally:
                self.bus_log.append((unit, started, time.monotonic()))

    async def _answer_on_bus(self, unit: int, function: int, pdu: bytes) -> bytes | Fault | None:
        """Answer one request while holding the bus."""
        delay = self.request_delay_s
        if self.baud and function in (3, 4) and len(pdu) == 5:
            count = struct.unpack(">H", pdu[3:5])[0]
            # 8-byte request and 5 + 2n-byte answer, 11 bits per byte (8N1 + start/stop
            # and parity or a second stop bit), plus 3.5 characters of silence each.
            delay += (8 + 5 + 2 * count + 7) * 11 / self.baud
        if delay:
            await asyncio.sleep(delay)
        sim = self.units.get(unit)
        fault = self.faults.get(unit, Fault.NONE) if sim else self.unknown_unit
        if fault is Fault.SILENT:
            return None
        if fault is Fault.RESET:
            return Fault.RESET
        if sim is None:
            return bytes([function | 0x80, TARGET_NO_RESPONSE])
        if fault is Fault.EXCEPTION:
            return bytes([function | 0x80, DEVICE_FAILURE])
        if function not in (3, 4) or len(pdu) != 5:
            return bytes([function | 0x80, ILLEGAL_FUNCTION])
        address, count = struct.unpack(">HH", pdu[1:5])
        if not 1 <= count <= 125 or address + count > REGISTER_SPAN:
            return bytes([function | 0x80, ILLEGAL_ADDRESS])
        values = sim.read(self._clock())
        words = read_registers(register_image(values, sim.meter.phases), address, count)
        if fault is Fault.SHORT:
            words = words[:-2]
        self.requests_served += 1
        return struct.pack(f">BB{len(words)}H", function, 2 * len(words), *words)


async def _serve_main(args: argparse.Namespace) -> None:
    from simulators.meter import SimulatedMeter

    gateways = []
    for g in range(args.gateways):
        units = [
            (
                u + 1,
                SimulatedMeter(
                    meter=Meter(
                        id=f"G{g:03d}U{u + 1:03d}",
                        service="1p2w" if u % 3 == 2 else "3p4w",
                        nominal_v=230,
                    ),
                    seed=g * 1000 + u,
                ),
            )
            for u in range(args.units)
        ]
        gateways.append(
            ModbusGateway(
                units,
                port=args.port + g,
                framer=args.framer,
                request_delay_s=args.delay,
                baud=args.baud,
            )
        )
    for gateway in gateways:
        await gateway.start()
    print(f"serving {args.gateways} gateways from port {args.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve simulated gateways on consecutive ports until killed (benchmarks use it)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=5020, help="first port")
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--units", type=int, default=20, help="meters per gateway")
    parser.add_argument("--framer", choices=["socket", "rtu"], default="socket")
    parser.add_argument("--delay", type=float, default=0.0, help="bus seconds per request")
    parser.add_argument("--baud", type=int, default=None, help="RS-485 line speed, e.g. 9600")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_main(args))


if __name__ == "__main__":
    main()
