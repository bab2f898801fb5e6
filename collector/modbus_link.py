"""A lean Modbus client link: function 03/04 reads over TCP (MBAP) or RTU frames over TCP.

The poller sends one request at a time per gateway and needs nothing of a general Modbus
client but reads, so this link is an asyncio Protocol that frames the request, matches
the answer (transaction id, unit and function) and hands back the register bytes as they
came off the wire. pymodbus's client did the same at about twice the CPU per request
(bench/RESULTS.md); its CRC routine is still the one used here.
"""

from __future__ import annotations

import asyncio
import struct

from pymodbus.framer.rtu import FramerRTU

_MBAP = struct.Struct(">HHHBBHH")  # tid, protocol, length, unit, function, address, count
_RTU = struct.Struct(">BBHH")  # unit, function, address, count


class LinkError(Exception):
    """A read got no usable answer; `kind` is timeout, exception, bad_length or connection."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class _Protocol(asyncio.Protocol):
    """Parses answers as they arrive and resolves the waiting request's future."""

    def __init__(self, rtu: bool) -> None:
        self.rtu = rtu
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: asyncio.Future[tuple[int, bytes]] | None = None
        self.expect: tuple[int, int, int] = (0, 0, 0)  # tid, unit, function

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(LinkError("connection", "connection lost"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.rtu:
            self._parse_rtu()
        else:
            self._parse_mbap()

    def _deliver(self, tid: int, unit: int, function: int, body: bytes) -> None:
        want_tid, want_unit, want_function = self.expect
        waiting = self.waiting
        if waiting is None or waiting.done():
            return  # a late answer to a request that timed out: dropped
        if tid != want_tid or unit != want_unit or function & 0x7F != want_function:
            return
        waiting.set_result((function, body))

    def _parse_mbap(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 8:
            tid, _protocol, length, unit = struct.unpack_from(">HHHB", buffer)
            end = 6 + length
            if len(buffer) < end:
                return
            function = buffer[7]
            body = bytes(buffer[8:end])
            del buffer[:end]
            self._deliver(tid, unit, function, body)

    def _parse_rtu(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 5:
            unit, function = buffer[0], buffer[1]
            size = 5 if function & 0x80 else 5 + buffer[2]
            if len(buffer) < size:
                return
            frame = bytes(buffer[:size])
            if FramerRTU.compute_CRC(frame[:-2]).to_bytes(2, "big") != frame[-2:]:
                buffer.clear()  # garbage on the line: wait for the next answer
                return
            del buffer[:size]
            self._deliver(0, unit, function, frame[2:-2])


class ModbusLink:
    """One TCP connection to a gateway; one outstanding request at a time."""

    def __init__(self, host: str, port: int, framer: str = "socket") -> None:
        self.host = host
        self.port = port
        self.rtu = framer == "rtu"
        self._protocol: _Protocol | None = None
        self._tid = 0

    @property
    def connected(self) -> bool:
        """True while the TCP connection is up."""
        return self._protocol is not None and self._protocol.transport is not None

    async def connect(self, timeout_s: float) -> bool:
        """Open the connection; False when the gateway cannot be reached."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(self.rtu), self.host, self.port
                )
        except (OSError, TimeoutError):
            return False
        self._protocol = protocol
        return True

    def close(self) -> None:
        """Drop the connection."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def read(
        self, function: int, address: int, count: int, unit: int, timeout_s: float
    ) -> bytes:
        """Read `count` registers; return their bytes, big-endian words as sent."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise LinkError("connection", "not connected")
        if self.rtu:
            head = _RTU.pack(unit, function, address, count)
            frame = head + FramerRTU.compute_CRC(head).to_bytes(2, "big")
            tid = 0
        else:
            self._tid = tid = self._tid % 65535 + 1
            frame = _MBAP.pack(tid, 0, 6, unit, function, address, count)
        waiting: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        protocol.waiting = waiting
        protocol.expect = (tid, unit, function)
        protocol.transport.write(frame)
        try:
            async with asyncio.timeout(timeout_s):
                answer_function, body = await waiting
        except TimeoutError as exc:
            if self.rtu:
                # RTU frames carry no transaction id: a late answer could pass for the
                # next one, so start the next request on a fresh connection.
                self.close()
            raise LinkError("timeout", f"no answer within {timeout_s:g} s") from exc
        finally:
            protocol.waiting = None
        if answer_function & 0x80:
            code = body[0] if body else 0
            raise LinkError("exception", f"exception code {code}")
        if not body or body[0] != len(body) - 1:
            raise LinkError("bad_length", "byte count does not match the answer")
        return body[1:]
