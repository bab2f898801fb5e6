"""Modbus TCP / RTU-over-TCP source: polls the meters on one gateway's bus, one at a time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusTcpClient

from collector.base import batch_from_rows, jittered_backoff
from collector.profiles import ReadRequest, builtin_profile, decode, plan_requests
from meterguard.errors import DecodeError
from meterguard.model import MeterRegistry, ReadingBatch
from meterguard.settings import ModbusSourceSettings
from meterguard.status import MeterStatus, StatusBoard

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


class ReadFailedError(Exception):
    """A read got no usable answer: timeout, exception response, or bad length."""


@dataclass(slots=True)
class _Device:
    meter: str
    slot: int
    unit: int
    requests: list[ReadRequest]
    status: MeterStatus


class ModbusSource:
    """Polls every meter behind one gateway; requests go one at a time, as on RS-485."""

    def __init__(
        self, settings: ModbusSourceSettings, registry: MeterRegistry, status: StatusBoard
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._devices = [
            _Device(
                meter=d.meter,
                slot=registry.slot(d.meter),
                unit=d.unit,
                requests=plan_requests(builtin_profile(d.profile)),
                status=status.meter(d.meter, settings.name),
            )
            for d in settings.devices
        ]
        self._client = AsyncModbusTcpClient(
            settings.host,
            port=settings.port,
            framer=FramerType.RTU if settings.framer == "rtu" else FramerType.SOCKET,
            timeout=settings.timeout_s,
            retries=settings.retries,
            reconnect_delay=0,  # reconnects are ours, with backoff and one log line
            name=f"modbus-{settings.name}",
        )
        self._rng = np.random.default_rng()
        self._down_since: float | None = None
        self._attempt = 0
        self.decode_errors = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.close()

    async def _ensure_connected(self) -> bool:
        """Connect if needed; log the first failure of an outage and the recovery only."""
        if self._client.connected:
            return True
        ok = await self._client.connect()
        if ok:
            if self._down_since is not None:
                log.info(
                    "gateway %s reachable again after %.0f s",
                    self.name,
                    time.monotonic() - self._down_since,
                )
            self._down_since = None
            self._attempt = 0
            return True
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "gateway %s (%s:%d) unreachable; retrying with backoff",
                self.name,
                self.settings.host,
                self.settings.port,
            )
        return False

    async def _read(self, device: _Device, request: ReadRequest) -> dict[str, float]:
        try:
            if request.function == 4:
                response = await self._client.read_input_registers(
                    request.address, count=request.count, device_id=device.unit
                )
            else:
                response = await self._client.read_holding_registers(
                    request.address, count=request.count, device_id=device.unit
                )
        except ModbusException as exc:
            raise ReadFailedError(str(exc)) from exc
        if response.isError():
            raise ReadFailedError(f"exception response {response}")
        try:
            return decode(request, list(response.registers))
        except DecodeError as exc:
            self.decode_errors += 1
            raise ReadFailedError(exc.reason) from exc

    async def _poll_device(self, device: _Device) -> dict[str, float] | None:
        values: dict[str, float] = {}
        status = device.status
        try:
            for request in device.requests:
                values.update(await self._read(device, request))
        except ReadFailedError as exc:
            status.errors += 1
            status.consecutive_failures += 1
            status.last_error = str(exc)
            status.last_error_at = time.time()
            if status.consecutive_failures == 1:
                log.warning(
                    "meter %s (unit %d on %s) failed: %s", device.meter, device.unit, self.name, exc
                )
            return None
        if status.consecutive_failures:
            log.info(
                "meter %s answers again after %d failed polls",
                device.meter,
                status.consecutive_failures,
            )
        status.consecutive_failures = 0
        status.last_ok = time.time()
        status.readings += 1
        return values

    async def poll_once(self) -> ReadingBatch:
        """Poll every meter once, in bus order, and return what answered."""
        rows: list[tuple[float, int, dict[str, float], int]] = []
        for device in self._devices:
            # A timed-out meter may make the client drop the link; the rest of the bus
            # still deserves its turn this round.
            if not self._client.connected and not await self._ensure_connected():
                break
            values = await self._poll_device(device)
            if values is not None:
                rows.append((time.time(), device.slot, values, 0))
        return batch_from_rows(rows)

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        """Poll at the configured interval and yield one batch per round."""
        interval = self.settings.interval_s
        next_round = time.monotonic()
        while True:
            if not await self._ensure_connected():
                delay = jittered_backoff(self._attempt, BACKOFF_BASE_S, BACKOFF_CAP_S, self._rng)
                self._attempt += 1
                await asyncio.sleep(delay)
                next_round = time.monotonic()
                continue
            batch = await self.poll_once()
            if len(batch):
                yield batch
            next_round += interval
            await asyncio.sleep(max(0.0, next_round - time.monotonic()))
            if time.monotonic() - next_round > interval:
                next_round = time.monotonic()  # fell behind: skip rounds, do not burst
