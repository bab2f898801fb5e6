"""DLMS/COSEM reading: gurux-dlms builds and parses the bytes, asyncio streams carry them.

One TCP connection (association) per meter, kept open between polls; scaler/unit of
every register is read once per association; any error drops the association and the
next poll associates again (with backoff while the meter stays unreachable). Each meter
polls in its own task: a round waits at most `timeout_s` for them, and a meter that is
slower hands its reading in with a later round instead of holding the others back.

The fraud event log is read every `event_interval_s`; entries newer than the newest one
already reported become event bits. An IDIS log is a ring buffer: once full, its entry
count stays put while old entries make room for new ones, so new entries are told apart
by their capture time, not by the count.

gurux-dlms is GPLv2: this module is imported only when a DLMS source is built
(collector/dlms.py, where the source type and its settings are) and the package comes
with the optional `dlms` extra (see README, "Licences").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import numpy as np
from gurux_dlms import GXByteBuffer, GXDateTime, GXDLMSClient, GXDLMSException, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Unit
from gurux_dlms.objects import GXDLMSProfileGeneric, GXDLMSRegister

from collector.base import batch_from_rows, jittered_backoff
from collector.dlms import DlmsDeviceSettings, DlmsSourceSettings
from meterguard.model import MeterEvent, MeterRegistry, ReadingBatch
from meterguard.status import (
    FailureKind,
    MeterStatus,
    ReadFailedError,
    StatusBoard,
    record_failure,
)

log = logging.getLogger(__name__)

#: OBIS code -> (quantity, sign): import and export per phase fold into one signed value.
OBIS_QUANTITIES: dict[str, tuple[str, float]] = {
    "1.0.32.7.0.255": ("v1", 1.0),
    "1.0.52.7.0.255": ("v2", 1.0),
    "1.0.72.7.0.255": ("v3", 1.0),
    "1.0.31.7.0.255": ("i1", 1.0),
    "1.0.51.7.0.255": ("i2", 1.0),
    "1.0.71.7.0.255": ("i3", 1.0),
    "1.0.91.7.0.255": ("in", 1.0),
    "1.0.21.7.0.255": ("p1", 1.0),
    "1.0.41.7.0.255": ("p2", 1.0),
    "1.0.61.7.0.255": ("p3", 1.0),
    "1.0.22.7.0.255": ("p1", -1.0),
    "1.0.42.7.0.255": ("p2", -1.0),
    "1.0.62.7.0.255": ("p3", -1.0),
    "1.0.1.8.0.255": ("e_imp", 1.0),
    "1.0.2.8.0.255": ("e_exp", 1.0),
    "1.0.14.7.0.255": ("f", 1.0),
}
#: Total active power import/export: p1 of a meter without per-phase registers.
TOTAL_POWER = {"1.0.1.7.0.255": 1.0, "1.0.2.7.0.255": -1.0}
#: Units converted to the model's (kWh for energy, W for power).
UNIT_FACTOR = {int(Unit.ACTIVE_ENERGY): 0.001, int(Unit.ACTIVE_POWER): 1.0}
#: IDIS fraud-log codes that the model has bits for; others are reported by code.
IDIS_EVENTS = {
    40: MeterEvent.TERMINAL_COVER_OPEN,
    41: MeterEvent.TERMINAL_COVER_CLOSED,
    42: MeterEvent.MAGNETIC_FIELD,
    44: MeterEvent.COVER_OPEN,
    45: MeterEvent.COVER_CLOSED,
}
READ_LIST_MAX = 10  # gurux puts at most 10 attributes in one get-with-list request
EVENT_LOOKBACK_S = 86400.0  # on the first read of a log, older entries count as history
BACKOFF_BASE_S = 1.0


#: One meter's answer to a poll: read time, quantities, event mask, unknown event codes.
_PollResult = tuple[float, dict[str, float], int, list[str]]


def classify(exc: BaseException) -> ReadFailedError:
    """Return how a poll failed, from what the transport or gurux raised."""
    if isinstance(exc, ReadFailedError):
        return exc
    if isinstance(exc, TimeoutError):
        return ReadFailedError(FailureKind.TIMEOUT, f"no answer within the timeout ({exc})")
    if isinstance(exc, OSError):  # refused, reset, no route: the meter cannot be reached
        return ReadFailedError(FailureKind.UNREACHABLE, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, GXDLMSException):
        code = exc.errorCode if isinstance(exc.errorCode, int) else None
        return ReadFailedError(FailureKind.DEVICE_EXCEPTION, str(exc).strip(), code)
    # gurux raises plain ValueErrors, IndexErrors, ... on answers it cannot parse.
    return ReadFailedError(FailureKind.DECODE_ERROR, f"{type(exc).__name__}: {exc}")


@dataclass(slots=True)
class _Meter:
    settings: DlmsDeviceSettings
    slot: int
    status: MeterStatus
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    client: Any = None
    registers: list[Any] = field(default_factory=list)
    event_log: Any = None
    #: The log's capacity (profile_entries); 0 when the meter does not say.
    log_capacity: int = 0
    #: Entries in use at the last read; -1 before the first read.
    entries_seen: int = -1
    #: Capture time (epoch s) of the newest entry handled, and how many entries carry it.
    newest_stamp: float | None = None
    newest_count: int = 0
    next_events: float = 0.0
    task: asyncio.Task[_PollResult | None] | None = None
    next_try: float = 0.0
    attempt: int = 0


class DlmsSource:
    """Polls DLMS/COSEM meters over the wrapper or HDLC, one association per meter."""

    def __init__(
        self, settings: DlmsSourceSettings, registry: MeterRegistry, status: StatusBoard
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._meters = [
            _Meter(d, registry.slot(d.meter), status.meter(d.meter, settings.name))
            for d in settings.devices
        ]
        self._rng = np.random.default_rng()
        #: frames, associations, events, readings, and failed polls by kind (FailureKind).
        self.counters: Counter[str] = Counter()
        status.register_source(self.name, self.counters, kind=settings.type)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for meter in self._meters:
            if meter.task is not None:
                meter.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await meter.task
                meter.task = None
            await self._release(meter)

    # -- transport ---------------------------------------------------------------------

    async def _exchange(self, meter: _Meter, data: bytes | bytearray, reply: Any) -> None:
        """Send one frame and read until gurux says the reply is complete."""
        if meter.writer is None or meter.reader is None:
            raise ReadFailedError(FailureKind.UNREACHABLE, "not connected")
        self.counters["frames"] += 1
        reply.error = 0
        notify = GXReplyData()
        meter.writer.write(bytes(data))
        await meter.writer.drain()
        received = GXByteBuffer()
        while not meter.client.getData(received, reply, notify):
            chunk = await asyncio.wait_for(meter.reader.read(4096), self.settings.timeout_s)
            if not chunk:
                raise ReadFailedError(FailureKind.UNREACHABLE, "connection closed by the meter")
            received.set(chunk)
        if reply.error:
            raise GXDLMSException(reply.error)

    async def _transfer(self, meter: _Meter, data: Any, reply: Any) -> None:
        """Send a request (one frame or several) and follow block transfers to the end."""
        if not data:
            return  # gurux has nothing to send (e.g. a release when no association stands)
        if isinstance(data, list):
            for frame in data:
                reply.clear()
                await self._transfer(meter, frame, reply)
            return
        await self._exchange(meter, data, reply)
        while reply.isMoreData():
            await self._exchange(meter, meter.client.receiverReady(reply), reply)

    async def _read(self, meter: _Meter, obj: Any, attribute: int) -> Any:
        reply = GXReplyData()
        await self._transfer(meter, meter.client.read(obj, attribute)[0], reply)
        return meter.client.updateValue(obj, attribute, reply.value)

    async def _read_list(self, meter: _Meter, items: Sequence[tuple[Any, int]]) -> None:
        for start in range(0, len(items), READ_LIST_MAX):
            chunk = list(items[start : start + READ_LIST_MAX])
            values: list[Any] = []
            for frame in meter.client.readList(chunk):
                reply = GXReplyData()
                await self._transfer(meter, frame, reply)
                values.extend(reply.value or [])
            if len(values) != len(chunk):
                raise ReadFailedError(
                    FailureKind.MALFORMED, f"asked for {len(chunk)} values, got {len(values)}"
                )
            meter.client.updateValues(chunk, values)

    # -- association -------------------------------------------------------------------

    def _client(self, device: DlmsDeviceSettings) -> Any:
        hdlc = self.settings.transport == "hdlc"
        server = (
            GXDLMSClient.getServerAddress(device.logical_address, device.physical_address)
            if hdlc
            else device.logical_address
        )
        password = self.settings.password
        return GXDLMSClient(
            True,
            self.settings.client_address,
            server,
            Authentication.LOW if password else Authentication.NONE,
            password,
            InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER,
        )

    async def _associate(self, meter: _Meter) -> None:
        device = meter.settings
        host = device.host or self.settings.host
        meter.reader, meter.writer = await asyncio.wait_for(
            asyncio.open_connection(host, device.port), self.settings.timeout_s
        )
        meter.client = self._client(device)
        reply = GXReplyData()
        snrm = meter.client.snrmRequest()
        if snrm:  # HDLC only: set up the link first
            await self._exchange(meter, snrm, reply)
            meter.client.parseUAResponse(reply.data)
            reply.clear()
        await self._transfer(meter, meter.client.aarqRequest(), reply)
        meter.client.parseAareResponse(reply.data)
        # Scaler and unit once per association; objects the meter lacks are left out.
        meter.registers = []
        for obis in (*OBIS_QUANTITIES, *TOTAL_POWER):
            register = GXDLMSRegister(obis)
            try:
                await self._read(meter, register, 3)
            except GXDLMSException:
                continue
            meter.registers.append(register)
        meter.event_log = GXDLMSProfileGeneric(self.settings.event_log)
        try:
            await self._read(meter, meter.event_log, 3)
        except GXDLMSException:
            meter.event_log = None
        else:
            try:
                meter.log_capacity = int(await self._read(meter, meter.event_log, 8) or 0)
            except GXDLMSException:
                meter.log_capacity = 0  # unknown: treat the log as possibly full
        self.counters["associations"] += 1

    async def _release(self, meter: _Meter) -> None:
        writer = meter.writer
        if writer is None:
            return
        try:
            if meter.client is not None:
                reply = GXReplyData()
                await asyncio.wait_for(
                    self._transfer(meter, meter.client.releaseRequest(), reply), 1.0
                )
        except Exception:
            pass  # not every meter answers a release; the socket goes anyway
        finally:
            meter.writer = meter.reader = None
            writer.close()

    # -- polling -----------------------------------------------------------------------

    def _values(self, meter: _Meter) -> dict[str, float]:
        values: dict[str, float] = {}
        totals: dict[str, float] = {}
        for register in meter.registers:
            raw = register.value
            if raw is None:
                continue
            factor = UNIT_FACTOR.get(int(register.unit), 1.0)
            value = float(raw) * factor
            obis = register.logicalName
            if obis in TOTAL_POWER:
                totals[obis] = value * TOTAL_POWER[obis]
                continue
            quantity, sign = OBIS_QUANTITIES[obis]
            values[quantity] = values.get(quantity, 0.0) + sign * value
        if "p1" not in values and totals:
            values["p1"] = sum(totals.values())
        return values

    async def _log_rows(self, meter: _Meter, first: int, count: int) -> list[Any]:
        """Read `count` entries of the event log from entry `first` (1-based) on."""
        reply = GXReplyData()
        await self._transfer(
            meter, meter.client.readRowsByEntry(meter.event_log, first, count), reply
        )
        return list(meter.client.updateValue(meter.event_log, 2, reply.value) or [])

    async def _events(self, meter: _Meter, now: float) -> tuple[int, list[str]]:
        """Read the event log if due; return the bits and unknown codes of new entries."""
        log_ = meter.event_log
        if log_ is None or now < meter.next_events:
            return 0, []
        meter.next_events = now + self.settings.event_interval_s
        entries = int(await self._read(meter, log_, 7) or 0)
        seen = meter.entries_seen
        meter.entries_seen = entries
        full = meter.log_capacity == 0 or entries >= meter.log_capacity
        if entries == 0 or (0 <= seen == entries and not full):
            return 0, []
        if 0 <= seen < entries and not full:
            rows = await self._log_rows(meter, seen + 1, entries - seen)
        else:  # first read, a full ring buffer or a cleared log: read it all, keep what is new
            rows = await self._log_rows(meter, 1, entries)
        return self._new_events(meter, rows, first_read=seen < 0)

    def _new_events(
        self, meter: _Meter, rows: list[Any], first_read: bool
    ) -> tuple[int, list[str]]:
        """Report the rows captured after the newest one already handled (oldest first)."""
        wall = time.time()
        newest, at_newest = meter.newest_stamp, meter.newest_count
        skip_at_newest = at_newest
        mask = 0
        unknown: list[str] = []
        for row in rows:
            stamp, code = row[0], int(row[1])
            when = stamp.value.timestamp() if isinstance(stamp, GXDateTime) else wall
            if meter.newest_stamp is not None:
                if when < meter.newest_stamp:
                    continue
                if when == meter.newest_stamp and skip_at_newest > 0:
                    skip_at_newest -= 1  # handled in an earlier read (same capture second)
                    continue
            if newest is None or when > newest:
                newest, at_newest = when, 1
            elif when == newest:
                at_newest += 1
            # On the first read of a log, older entries are history, not news.
            if first_read and when < wall - EVENT_LOOKBACK_S:
                continue
            self.counters["events"] += 1
            flag = IDIS_EVENTS.get(code)
            if flag is None:
                unknown.append(f"dlms_event_{code}")
            else:
                mask |= flag
        meter.newest_stamp, meter.newest_count = newest, at_newest
        return mask, unknown

    async def _poll(self, meter: _Meter) -> _PollResult | None:
        now = time.monotonic()
        if now < meter.next_try:
            return None
        try:
            if meter.writer is None:
                await self._associate(meter)
            await self._read_list(meter, [(r, 2) for r in meter.registers])
            read_at = time.time()
            mask, unknown = await self._events(meter, now)
        except Exception as exc:  # gurux raises many kinds: one meter never stops the others
            await self._fail(meter, exc)
            return None
        self._succeed(meter)
        return read_at, self._values(meter), mask, unknown

    async def _fail(self, meter: _Meter, exc: BaseException) -> None:
        await self._release(meter)
        failure = classify(exc)
        if record_failure(meter.status, self.counters, failure, time.time()):
            log.warning(
                "dlms meter %s failed: %s; associating again", meter.settings.meter, failure
            )
        elif meter.status.consecutive_failures > 1:  # reachable again? not yet: back off
            delay = jittered_backoff(
                meter.attempt, BACKOFF_BASE_S, self.settings.backoff_max_s, self._rng
            )
            meter.attempt += 1
            meter.next_try = time.monotonic() + delay

    def _succeed(self, meter: _Meter) -> None:
        self.counters["readings"] += 1
        ended = meter.status.succeeded(time.time())
        if ended:
            log.info(
                "dlms meter %s answers again after %d failed polls", meter.settings.meter, ended
            )
        meter.attempt = 0
        meter.next_try = 0.0

    async def poll_once(self) -> ReadingBatch:
        """Poll every meter in its own task; return what answered within `timeout_s`.

        A meter still busy when the round ends keeps its task and hands its reading in
        with a later round, so one slow meter never holds back the others' readings.
        """
        for meter in self._meters:
            if meter.task is None:
                meter.task = asyncio.create_task(self._poll(meter))
        pending = [m.task for m in self._meters if m.task is not None]
        await asyncio.wait(pending, timeout=self.settings.timeout_s)
        rows: list[tuple[float, int, dict[str, float], int]] = []
        unknown: dict[int, list[str]] = {}
        for meter in self._meters:
            task = meter.task
            if task is None or not task.done():
                continue
            meter.task = None
            result = task.result()
            if result is None:
                continue
            read_at, values, mask, codes = result
            if codes:
                unknown[len(rows)] = codes
            rows.append((read_at, meter.slot, values, mask))
        batch = batch_from_rows(rows)
        return dataclasses.replace(batch, unknown_events=unknown) if unknown else batch

    async def batches(self) -> AsyncGenerator[ReadingBatch, None]:
        """Poll at the configured interval and yield one batch per round."""
        interval = self.settings.interval_s
        next_round = time.monotonic()
        while True:
            batch = await self.poll_once()
            if len(batch):
                yield batch
            next_round = max(next_round + interval, time.monotonic())
            await asyncio.sleep(next_round - time.monotonic())
