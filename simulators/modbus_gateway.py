"""A simulated Modbus TCP gateway: several meters on one RS-485 bus behind one TCP port."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.meter import SimulatedMeter
from simulators.registers import SDM120, SDM120_PF, SDM630, SDM630_PF, float32_words

#: Registers each simulated device exposes (covers the SDM maps up to 0xE1).
REGISTER_SPAN = 0x100


def register_map(sim: SimulatedMeter) -> tuple[dict[str, int], dict[int, int]]:
    """Return the Eastron map matching a meter's service: SDM120 or SDM630."""
    return (SDM120, SDM120_PF) if sim.meter.phases == 1 else (SDM630, SDM630_PF)


class ModbusGateway:
    """Serves simulated meters as Modbus units; one request at a time, like an RS-485 bus."""

    def __init__(
        self,
        units: Sequence[tuple[int, SimulatedMeter]],
        *,
        host: str = "127.0.0.1",
        port: int = 5020,
        framer: str = "socket",
        request_delay_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.request_delay_s = request_delay_s
        self._clock = clock
        self._bus = asyncio.Lock()
        self.requests_served = 0
        devices = [
            SimDevice(
                id=unit,
                simdata=[
                    SimData(address=0, count=REGISTER_SPAN, values=0, datatype=DataType.REGISTERS)
                ],
                action=functools.partial(self._answer, sim, *register_map(sim)),
            )
            for unit, sim in units
        ]
        self._server = ModbusTcpServer(
            devices,
            address=(host, port),
            framer=FramerType.RTU if framer == "rtu" else FramerType.SOCKET,
        )

    async def _answer(
        self,
        sim: SimulatedMeter,
        addresses: dict[str, int],
        pf_addresses: dict[int, int],
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Fill the registers with the meter's present values before the server answers."""
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # meters' measurement registers are read-only
        async with self._bus:
            if self.request_delay_s:
                await asyncio.sleep(self.request_delay_s)
            values = sim.read(self._clock())
            for quantity, reg in addresses.items():
                offset = reg - start_address
                registers[offset : offset + 2] = float32_words(values[quantity])
            for phase, reg in pf_addresses.items():
                apparent = values[f"v{phase}"] * values[f"i{phase}"]
                pf = values[f"p{phase}"] / apparent if apparent else 1.0
                offset = reg - start_address
                registers[offset : offset + 2] = float32_words(pf)
            self.requests_served += 1
        return None

    async def start(self) -> None:
        """Start listening."""
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        """Stop listening and drop the connections."""
        await self._server.shutdown()  # type: ignore[no-untyped-call]

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
