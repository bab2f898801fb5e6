"""Modbus TCP / RTU-over-TCP source: polls the meters on one gateway's bus, one at a time.

A failed read is classified from what pymodbus hands back, never from its message text:
an ExceptionResponse is the device's (or for codes 10 and 11 the gateway's) exception, a
ConnectionException or a request that ended with the connection gone means unreachable,
a ModbusIOException on a live connection means no answer in time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from collector.base import batch_from_rows, jittered_backoff, raise_dropped_cancel
from collector.profiles import (
    ReadRequest,
    decode,
    default_profile,
    plan_requests,
    profile_misfit,
    resolve_profile,
)
from collector.registry import Problem, register_source
from meterguard.errors import ConfigError, DecodeError
from meterguard.model import MeterRegistry, ReadingBatch
from meterguard.source_settings import SourceSettingsBase
from meterguard.status import (
    FailureKind,
    MeterStatus,
    ReadFailedError,
    StatusBoard,
    record_failure,
)

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0
#: Failed requests in a row after which pymodbus would drop the connection on its own;
#: the source decides that itself (a whole silent bus, not one dead meter, means reconnect).
_NO_AUTO_DISCONNECT = 1 << 30


class _QuietTimeouts(logging.Filter):
    """Drops pymodbus's per-request "No response received" errors: the source logs outages."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No response received" not in record.getMessage()


logging.getLogger("pymodbus.logging").addFilter(_QuietTimeouts())

#: What a Modbus exception code means (Modbus Application Protocol v1.1b3, section 7).
EXCEPTION_MEANINGS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "path unavailable",
    11: "target device did not respond",
}
#: Exception codes a gateway sends for the device behind it, counted as `gateway` failures.
GATEWAY_EXCEPTIONS = (10, 11)
#: Failures that say nothing answers at all: when every meter of a bus fails so, the
#: gateway (not one meter) is out, and is reconnected with backoff.
_OUTAGE_KINDS = frozenset((FailureKind.TIMEOUT.value, FailureKind.UNREACHABLE.value))
#: Successful polls of a meter after start-up whose values are checked for the impossible.
STARTUP_CHECKS = 3
#: Magnitudes and registers that cannot go below zero (powers can: export).
_NEVER_NEGATIVE = frozenset(("v1", "v2", "v3", "i1", "i2", "i3", "in", "e_imp", "e_exp", "f"))
#: A phase carrying more active power than this, W, cannot show 0 V.
_LIVE_POWER_W = 20.0


class ModbusDeviceSettings(BaseModel):
    """One meter behind a Modbus gateway."""

    model_config = ConfigDict(extra="forbid")

    meter: str = Field(min_length=1, description="Meter id (must be in the registry).")
    unit: int = Field(ge=1, le=247, description="Modbus unit id on the gateway's bus.")
    profile: str | None = Field(
        default=None,
        description="Register map: sdm630, sdm120, or the path of a profile TOML file "
        "(relative to the config file; format in docs/COLLECTORS.md). Default: by the "
        "meter's service, sdm120 for 1p2w and sdm630 for 3p4w and 3p3w. A map that does not "
        "fit the service (three-phase on 1p2w, single-phase on three-phase) is refused.",
    )
    interval_s: float | None = Field(
        default=None, gt=0, description="Seconds between polls of this meter (default: gateway's)."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds to wait for one answer (default: gateway's)."
    )
    retries: int | None = Field(
        default=None, ge=0, le=10, description="Retries of a failed poll (default: gateway's)."
    )


class ModbusSourceSettings(SourceSettingsBase):
    """A Modbus TCP (or RTU-over-TCP) gateway and the meters on its bus."""

    type: Literal["modbus"] = "modbus"
    host: str = Field(default="127.0.0.1", description="Gateway address.")
    port: int = Field(default=502, ge=1, le=65535, description="Gateway TCP port.")
    framer: Literal["socket", "rtu"] = Field(
        default="socket", description="socket: Modbus TCP (MBAP); rtu: RTU frames over TCP."
    )
    interval_s: float = Field(default=5.0, gt=0, description="Seconds between polls of a meter.")
    timeout_s: float = Field(default=2.0, gt=0, description="Seconds to wait for one answer.")
    retries: int = Field(default=1, ge=0, le=10, description="Retries of a failed poll.")
    pause_s: float = Field(
        default=0.0, ge=0, description="Pause between two requests on the bus (slow gateways)."
    )
    backoff_max_s: float = Field(
        default=60.0, gt=0, description="Longest wait between reconnects to a dead gateway."
    )
    devices: list[ModbusDeviceSettings] = Field(
        default_factory=list, description="Meters on this gateway's bus."
    )

    def lease_key(self) -> str:
        """Return the gateway itself: one poller at a time on its bus."""
        return f"modbus://{self.host}:{self.port}"

    @model_validator(mode="after")
    def _units_unique(self) -> ModbusSourceSettings:
        units = [d.unit for d in self.devices]
        if len(units) != len(set(units)):
            raise ValueError(f"gateway {self.name!r} lists a unit id twice")
        return self

    def meter_ids(self) -> list[str]:
        """Return the meters this source reads."""
        return [d.meter for d in self.devices]

    def resolve_paths(self, base: Path) -> None:
        """Make profile file paths absolute against the config file's folder."""
        for device in self.devices:
            profile = device.profile
            if (
                profile is not None
                and profile.endswith(".toml")
                and not Path(profile).is_absolute()
            ):
                device.profile = str(base / profile)


def describe_exception(code: int) -> ReadFailedError:
    """Return the failure a Modbus exception answer with this code stands for."""
    meaning = EXCEPTION_MEANINGS.get(code)
    if code in GATEWAY_EXCEPTIONS:
        # The gateway answered, the meter behind it did not (or cannot be reached).
        return ReadFailedError(FailureKind.GATEWAY, f"{meaning} (exception {code})", code)
    detail = f"exception code {code}" if meaning is None else f"{meaning} (exception {code})"
    return ReadFailedError(FailureKind.DEVICE_EXCEPTION, detail, code)


def classify_error(
    exc: ModbusException, connected: bool, timeout_s: float, tries: int
) -> ReadFailedError:
    """Return the failure a pymodbus exception raised by a request stands for.

    `connected` is whether the client still has its connection after the request: a
    request whose connection went away meanwhile failed for that, not for a slow meter.
    """
    if isinstance(exc, ConnectionException) or not connected:
        return ReadFailedError(FailureKind.UNREACHABLE, "connection lost or refused")
    if isinstance(exc, ModbusIOException):
        # pymodbus gives up on a request after its retries without an answer (or with
        # answers of another transaction or unit, which count the same: none of ours).
        detail = f"no answer within {timeout_s:g} s ({tries} tries)"
        return ReadFailedError(FailureKind.TIMEOUT, detail)
    return ReadFailedError(FailureKind.MALFORMED, f"{type(exc).__name__}: {exc}")


def classify_response(response: ModbusPDU) -> ReadFailedError | None:
    """Return the failure an answer stands for (an exception response), else None."""
    if isinstance(response, ExceptionResponse):
        return describe_exception(response.exception_code)
    return None


def impossible_values(values: dict[str, float], phases: int) -> dict[str, str]:
    """Return the quantities whose value no working meter can show, with why.

    A NaN or infinite float, a negative voltage, current or energy register, a phase at
    0 V that carries power, or a frequency of 0 on a live meter: usually a wrong address,
    register type or word order in the profile. A neutral of 0, an idle phase, a low
    reading are possible and not reported.
    """
    problems: dict[str, str] = {}
    for quantity, value in values.items():
        if not math.isfinite(value):
            problems[quantity] = f"answers {value} (not a number)"
        elif value < 0 and quantity in _NEVER_NEGATIVE:
            problems[quantity] = f"answers {value:g}, below zero"
    for k in range(1, phases + 1):
        volts, power = values.get(f"v{k}"), values.get(f"p{k}")
        if volts is None or power is None or f"v{k}" in problems:
            continue
        if abs(volts) < 1.0 and abs(power) > _LIVE_POWER_W:
            problems[f"v{k}"] = f"answers {volts:g} V while phase {k} carries {power:.0f} W"
    live = any(values.get(f"v{k}", 0.0) > 50.0 for k in range(1, phases + 1))
    if live and "f" in values and "f" not in problems and values["f"] == 0.0:
        problems["f"] = "answers 0 Hz while the voltage is live"
    return problems


@dataclass(slots=True)
class _Device:
    meter: str
    slot: int
    unit: int
    requests: list[ReadRequest]
    status: MeterStatus
    interval_s: float
    timeout_s: float
    retries: int
    phases: int
    next_due: float = 0.0
    #: Successful polls whose values are still to be checked for the impossible.
    checks_left: int = STARTUP_CHECKS


class ModbusSource:
    """Polls every meter behind one gateway; requests go one at a time, as on RS-485.

    Each meter has its own interval, timeout and retries; a meter that does not answer
    costs the others at most its timeout per attempt. A gateway that refuses connections,
    or whose meters all time out, is retried with jittered exponential backoff. Only the
    first failure of an outage and the recovery are logged.
    """

    def __init__(
        self, settings: ModbusSourceSettings, registry: MeterRegistry, status: StatusBoard
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._devices = []
        for d in settings.devices:
            meter = registry.by_slot(registry.slot(d.meter))
            profile = resolve_profile(d.profile or default_profile(meter.service))
            self._devices.append(
                _Device(
                    meter=d.meter,
                    slot=registry.slot(d.meter),
                    unit=d.unit,
                    requests=plan_requests(profile),
                    status=status.meter(d.meter, settings.name),
                    interval_s=d.interval_s or settings.interval_s,
                    timeout_s=d.timeout_s or settings.timeout_s,
                    retries=settings.retries if d.retries is None else d.retries,
                    phases=meter.phases,
                )
            )
        self._client = AsyncModbusTcpClient(
            settings.host,
            port=settings.port,
            framer=FramerType.RTU if settings.framer == "rtu" else FramerType.SOCKET,
            timeout=settings.timeout_s,
            retries=settings.retries,
            reconnect_delay=0,  # reconnects are the source's, with backoff and one log line
            name=f"modbus-{settings.name}",
        )
        self._client.set_max_no_responses(_NO_AUTO_DISCONNECT)
        #: pymodbus keeps its timeout and retries in the transaction manager; requests go one
        #: at a time, so each is sent with its meter's values set just before.
        self._comm = self._client.ctx
        self._rng = np.random.default_rng()
        self._down_since: float | None = None
        self._attempt = 0
        #: Failed reads by kind (FailureKind), readings, requests sent and backoffs taken.
        self.counters: Counter[str] = Counter()
        self.health = status.register_source(self.name, self.counters, kind=settings.type)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.close()

    def _gateway_down(self, reason: str) -> None:
        where = f"gateway {self.settings.host}:{self.settings.port}"
        self.health.upstream(False, f"{where} {reason}")
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "gateway %s (%s:%d) %s; retrying with backoff",
                self.name,
                self.settings.host,
                self.settings.port,
                reason,
            )

    def _gateway_up(self) -> None:
        self.health.upstream(True)
        if self._down_since is not None:
            log.info(
                "gateway %s answers again after %.0f s",
                self.name,
                time.monotonic() - self._down_since,
            )
        self._down_since = None
        self._attempt = 0

    async def ensure_connected(self) -> bool:
        """Connect if needed; an outage is logged once, by _gateway_down."""
        if self._client.connected:
            return True
        self._comm.comm_params.timeout_connect = self.settings.timeout_s
        if await self._client.connect():
            return True
        self.counters["connect_failures"] += 1
        self._gateway_down("unreachable")
        return False

    async def _backoff(self) -> None:
        delay = jittered_backoff(
            self._attempt, BACKOFF_BASE_S, self.settings.backoff_max_s, self._rng
        )
        self._attempt += 1
        self.counters["backoffs"] += 1
        await asyncio.sleep(delay)

    async def _read(self, device: _Device, request: ReadRequest) -> dict[str, float]:
        """Send one read with the meter's timeout and retries; pause the bus afterwards."""
        if request.function == 4:
            call = self._client.read_input_registers
        else:
            call = self._client.read_holding_registers
        self.counters["requests"] += 1
        self._comm.comm_params.timeout_connect = device.timeout_s
        self._comm.retries = device.retries
        failure: ReadFailedError | None = None
        try:
            response = await call(request.address, count=request.count, device_id=device.unit)
        except ModbusException as exc:
            failure = classify_error(
                exc, self._client.connected, device.timeout_s, device.retries + 1
            )
            if failure.kind is FailureKind.TIMEOUT and self.settings.framer == "rtu":
                # RTU frames carry no transaction id: a late answer could pass for the
                # next meter's, so that one starts on a fresh connection.
                self._client.close()
        else:
            failure = classify_response(response)
        # pymodbus may have dropped a cancel that came with the answer: the poll stops here.
        raise_dropped_cancel(asyncio.current_task())
        # Not in a finally: a cancelled poll must stop at once, not after the pause.
        if self.settings.pause_s:
            await asyncio.sleep(self.settings.pause_s)
        if failure is not None:
            raise failure
        try:
            return decode(request, response.registers)
        except DecodeError as exc:
            raise ReadFailedError(FailureKind.MALFORMED, exc.reason) from exc

    async def _poll_device(self, device: _Device) -> dict[str, float] | None:
        """Read every request of one meter; pymodbus re-sends a request that times out."""
        if not self._client.connected and not await self.ensure_connected():
            failure = ReadFailedError(FailureKind.UNREACHABLE, "gateway not connected")
            self._record_failure(device, failure)
            return None
        values: dict[str, float] = {}
        try:
            for request in device.requests:
                values.update(await self._read(device, request))
        except ReadFailedError as exc:
            self._record_failure(device, exc)
            return None
        self._record_success(device, values)
        return values

    def _record_success(self, device: _Device, values: dict[str, float]) -> None:
        if device.checks_left:
            device.checks_left -= 1
            self._check_values(device, values)
        self.counters["readings"] += 1
        ended = device.status.succeeded(time.time())
        if ended:
            log.info(
                "meter %s (unit %d on %s) answers again after %d failed polls",
                device.meter,
                device.unit,
                self.name,
                ended,
            )
        self._gateway_up()

    def _check_values(self, device: _Device, values: dict[str, float]) -> None:
        """Report registers that answer the impossible, each once, in the meter's status."""
        known = device.status.register_problems
        for quantity, why in impossible_values(values, device.phases).items():
            if quantity in known:
                continue
            known[quantity] = why
            log.warning(
                "meter %s (unit %d on %s): the %s register %s; check the profile's address, "
                "type and word order",
                device.meter,
                device.unit,
                self.name,
                quantity,
                why,
            )

    def _record_failure(self, device: _Device, failure: ReadFailedError) -> None:
        if record_failure(device.status, self.counters, failure, time.time()):
            log.warning(
                "meter %s (unit %d on %s) failed: %s", device.meter, device.unit, self.name, failure
            )

    async def poll_once(self, meters: Collection[str] | None = None) -> ReadingBatch:
        """Poll the given meters (ids; default: all) once, in bus order; return what answered."""
        chosen = (
            self._devices if meters is None else [d for d in self._devices if d.meter in meters]
        )
        return await self._poll(chosen)

    async def _poll(self, devices: list[_Device]) -> ReadingBatch:
        """Poll these meters once, in the order given; return what answered."""
        rows: list[tuple[float, int, dict[str, float], int]] = []
        for device in devices:
            values = await self._poll_device(device)
            if values is not None:
                rows.append((time.time(), device.slot, values, 0))
        return batch_from_rows(rows)

    def _gateway_silent(self) -> bool:
        """Tell whether no meter on the bus answers at all: the gateway, not one meter, is out."""
        return all(
            d.status.consecutive_failures > 0 and d.status.last_failure in _OUTAGE_KINDS
            for d in self._devices
        )

    async def batches(self) -> AsyncGenerator[ReadingBatch, None]:
        """Poll each meter at its interval and yield one batch per pass over the due meters."""
        if not self._devices:
            await asyncio.Event().wait()  # a gateway without meters has nothing to read
        while True:
            if not await self.ensure_connected():
                await self._backoff()
                continue
            now = time.monotonic()
            due = [d for d in self._devices if d.next_due <= now]
            if not due:
                await asyncio.sleep(min(d.next_due for d in self._devices) - now)
                continue
            batch = await self._poll(due)
            done = time.monotonic()
            for device in due:
                # Behind schedule: poll again as soon as the bus allows, never in a burst.
                device.next_due = max(device.next_due + device.interval_s, done)
            if len(batch):
                yield batch
            elif self._gateway_silent():
                self._gateway_down("does not answer")
                self._client.close()
                await self._backoff()


def check_profiles(settings: ModbusSourceSettings, fleet: MeterRegistry) -> list[Problem]:
    """Return devices whose profile cannot be loaded or does not fit the meter's service.

    Keys are relative to the source's entry, e.g. `devices[2].profile`; the config check
    (`meterguard run --check`) and the service's start both come through here.
    """
    problems: list[Problem] = []
    for d, device in enumerate(settings.devices):
        meter = fleet.get(device.meter)
        if meter is None:
            continue  # reported as an unknown meter
        key = f"devices[{d}].profile"
        try:
            profile = resolve_profile(device.profile or default_profile(meter.service))
        except ConfigError as exc:
            problems += [(key, f"{where}: {message}") for where, message in exc.problems]
            continue
        misfit = profile_misfit(profile, meter)
        if misfit is not None:
            problems.append((key, misfit))
    return problems


register_source("modbus", ModbusSourceSettings, ModbusSource, check_profiles)
