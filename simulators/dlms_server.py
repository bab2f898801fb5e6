"""Simulated DLMS/COSEM meters: OBIS registers with scaler/unit and a fraud event log.

Runs as its own process (`python -m simulators.dlms_server`), one TCP port per meter,
IEC 62056-47 wrapper or HDLC framing. It is built on pydlms-client's MeterSimulator,
which is GPL-3.0: keep it a separate program talking over TCP (the collector uses
gurux-dlms, GPLv2-only, and the two licences cannot be combined in one process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydlms.cosem.data import DlmsData
from pydlms.cosem.interface_classes import ClassId
from pydlms.cosem.time import CosemDateTime
from pydlms.obis import ObisCode
from pydlms.security.hls import Mechanism
from pydlms.simulator import ClientProfile, MeterSimulator, serve

from meterguard.model import Meter
from simulators.meter import SimulatedMeter

#: Units of the Blue Book (enum values used here).
WATT, WATT_HOUR, VOLT, AMPERE, HERTZ, NO_UNIT = 27, 30, 35, 33, 44, 255

#: The fraud-detection event log (IDIS), its event-code object and the clock.
FRAUD_LOG = "0.0.99.98.1.255"
FRAUD_EVENT_CODE = "0.0.96.11.1.255"
CLOCK = "0.0.1.0.0.255"


@dataclass(frozen=True, slots=True)
class ObisRegister:
    """A Register object: OBIS, scaler (power of ten), unit and how to compute the value."""

    obis: str
    scaler: int
    unit: int
    value: Callable[[dict[str, float]], float]


def _phase(n: int, key: str) -> Callable[[dict[str, float]], float]:
    return lambda v: v.get(f"{key}{n}", 0.0)


def _import(q: str) -> Callable[[dict[str, float]], float]:
    return lambda v: max(v.get(q, 0.0), 0.0)


def _export(q: str) -> Callable[[dict[str, float]], float]:
    return lambda v: max(-v.get(q, 0.0), 0.0)


def _total(sign: int) -> Callable[[dict[str, float]], float]:
    return lambda v: max(sign * sum(v.get(f"p{k}", 0.0) for k in (1, 2, 3)), 0.0)


#: Instantaneous values and energy registers by OBIS code (docs/PHYSICS.md, DLMS/COSEM).
REGISTERS: tuple[ObisRegister, ...] = (
    ObisRegister("1.0.32.7.0.255", -1, VOLT, _phase(1, "v")),
    ObisRegister("1.0.52.7.0.255", -1, VOLT, _phase(2, "v")),
    ObisRegister("1.0.72.7.0.255", -1, VOLT, _phase(3, "v")),
    ObisRegister("1.0.31.7.0.255", -2, AMPERE, _phase(1, "i")),
    ObisRegister("1.0.51.7.0.255", -2, AMPERE, _phase(2, "i")),
    ObisRegister("1.0.71.7.0.255", -2, AMPERE, _phase(3, "i")),
    ObisRegister("1.0.91.7.0.255", -2, AMPERE, lambda v: v.get("in", 0.0)),
    ObisRegister("1.0.1.7.0.255", 0, WATT, _total(1)),
    ObisRegister("1.0.2.7.0.255", 0, WATT, _total(-1)),
    ObisRegister("1.0.21.7.0.255", 0, WATT, _import("p1")),
    ObisRegister("1.0.41.7.0.255", 0, WATT, _import("p2")),
    ObisRegister("1.0.61.7.0.255", 0, WATT, _import("p3")),
    ObisRegister("1.0.22.7.0.255", 0, WATT, _export("p1")),
    ObisRegister("1.0.42.7.0.255", 0, WATT, _export("p2")),
    ObisRegister("1.0.62.7.0.255", 0, WATT, _export("p3")),
    ObisRegister("1.0.1.8.0.255", 0, WATT_HOUR, lambda v: v["e_imp"] * 1000.0),
    ObisRegister("1.0.2.8.0.255", 0, WATT_HOUR, lambda v: v["e_exp"] * 1000.0),
    ObisRegister("1.0.14.7.0.255", -2, HERTZ, lambda v: v["f"]),
)
SINGLE_PHASE_SKIP = {"1.0.52.7.0.255", "1.0.72.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255"}
SINGLE_PHASE_SKIP |= {"1.0.41.7.0.255", "1.0.61.7.0.255", "1.0.42.7.0.255", "1.0.62.7.0.255"}


def _datetime(ts: float) -> DlmsData:
    stamp = CosemDateTime.from_datetime(dt.datetime.fromtimestamp(ts, dt.UTC))
    return DlmsData.octet_string(stamp.to_bytes())


#: Entries an IDIS fraud log keeps before the oldest make room (a ring buffer).
LOG_CAPACITY = 100
NEUTRAL = "1.0.91.7.0.255"


class DlmsMeter:
    """One simulated meter served by a MeterSimulator: values follow a SimulatedMeter.

    The fraud log is a ring buffer of `log_capacity` entries, as in a real meter: once
    full, each new event pushes the oldest out and the entry count stays put. A meter
    without a neutral current element (`neutral=False`) does not have the neutral current
    register at all.
    """

    def __init__(
        self,
        sim: SimulatedMeter,
        events: Sequence[tuple[float, int]] = (),
        clock: Callable[[], float] = time.time,
        log_capacity: int = LOG_CAPACITY,
        neutral: bool = True,
    ) -> None:
        self.sim = sim
        self.events = sorted(events)
        self.log_capacity = log_capacity
        self._clock = clock
        self.neutral = neutral
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._values_at = -1.0
        self.server = MeterSimulator()
        self._build()

    def _snapshot(self) -> dict[str, float]:
        """Read the model once per half second so that one poll sees one instant."""
        with self._lock:
            now = self._clock()
            if now - self._values_at > 0.5:
                self._values = self.sim.read(now)
                self._values_at = now
            return self._values

    def _register_value(self, reg: ObisRegister) -> Callable[[], DlmsData]:
        def value() -> DlmsData:
            raw = round(reg.value(self._snapshot()) / 10.0**reg.scaler)
            return DlmsData.int32(raw) if raw < 2**31 else DlmsData.uint32(raw % 2**32)

        return value

    def _build(self) -> None:
        single = self.sim.meter.phases == 1
        for reg in REGISTERS:
            if single and reg.obis in SINGLE_PHASE_SKIP:
                continue
            if reg.obis == NEUTRAL and not self.neutral:
                continue
            self.server.add_object(
                ClassId.REGISTER,
                reg.obis,
                {
                    2: self._register_value(reg),  # type: ignore[dict-item]
                    3: DlmsData.structure([DlmsData.int8(reg.scaler), DlmsData.enum(reg.unit)]),
                },
            )
        self.server.add_object(ClassId.CLOCK, CLOCK, {2: self._clock_value})  # type: ignore[dict-item]
        self.server.add_object(ClassId.DATA, FRAUD_EVENT_CODE, {2: DlmsData.uint8(0)})
        capture = DlmsData.array(
            [
                DlmsData.structure(
                    [
                        DlmsData.uint16(cid),
                        DlmsData.octet_string(ObisCode.parse(name).to_bytes()),
                        DlmsData.int8(2),
                        DlmsData.uint16(0),
                    ]
                )
                for cid, name in ((ClassId.CLOCK, CLOCK), (ClassId.DATA, FRAUD_EVENT_CODE))
            ]
        )
        self.server.add_object(
            ClassId.PROFILE_GENERIC,
            FRAUD_LOG,
            {
                2: self._log_buffer(),
                3: capture,
                7: self._entries_in_use(),
                8: DlmsData.uint32(self.log_capacity),
            },
        )

    def refresh_event_log(self) -> None:
        """Put the events that have happened by now into the log as a stored value.

        The simulator's selective access by entry needs the buffer itself, not a callable.
        """
        attrs = self.server.objects[(int(ClassId.PROFILE_GENERIC), ObisCode.parse(FRAUD_LOG))]
        with self.server.lock:
            attrs[2] = self._log_buffer()
            attrs[7] = self._entries_in_use()

    def _clock_value(self) -> DlmsData:
        return _datetime(self._clock())

    def _happened(self) -> list[tuple[float, int]]:
        """Return the entries the ring buffer holds now: the newest `log_capacity` events."""
        now = self._clock()
        happened = [(t, code) for t, code in self.events if t <= now]
        return happened[-self.log_capacity :] if self.log_capacity else []

    def _log_buffer(self) -> DlmsData:
        return DlmsData.array(
            [DlmsData.structure([_datetime(t), DlmsData.uint8(c)]) for t, c in self._happened()]
        )

    def _entries_in_use(self) -> DlmsData:
        return DlmsData.uint32(len(self._happened()))


def serve_meters(
    meters: Sequence[DlmsMeter], first_port: int, hdlc: bool, host: str = "127.0.0.1"
) -> list[socketserver.TCPServer]:
    """Serve each meter on its own port from first_port on; return the servers."""
    # Python's default listen backlog (5) refuses connections when many clients start at once.
    socketserver.TCPServer.request_queue_size = 256
    servers = [serve(m.server, host, first_port + k, hdlc=hdlc) for k, m in enumerate(meters)]

    def refresh() -> None:
        while True:
            for meter in meters:
                meter.refresh_event_log()
            time.sleep(0.1)

    threading.Thread(target=refresh, daemon=True, name="event-logs").start()
    return servers


def _parse_event(spec: str) -> tuple[int, float, int]:
    meter, offset, code = spec.split(":")
    return int(meter), float(offset), int(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve simulated DLMS meters until killed; prints one line when listening."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True, help="port of the first meter")
    parser.add_argument("--meters", type=int, default=1)
    parser.add_argument("--hdlc", action="store_true", help="HDLC over TCP (default: wrapper)")
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="METER:OFFSET_S:CODE",
        help="a fraud-log event of meter METER (0-based) OFFSET_S after start, e.g. 0:0:40",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--log-capacity", type=int, default=LOG_CAPACITY, help="fraud-log ring buffer size"
    )
    parser.add_argument(
        "--no-neutral",
        type=int,
        action="append",
        default=[],
        metavar="METER",
        help="meter METER (0-based) has no neutral current element",
    )
    parser.add_argument(
        "--lls-password",
        default=None,
        help="also accept client SAP 17 with low-level security (LLS) and this password",
    )
    args = parser.parse_args(argv)
    start = time.time()
    events: dict[int, list[tuple[float, int]]] = {}
    for spec in args.event:
        meter, offset, code = _parse_event(spec)
        events.setdefault(meter, []).append((start + offset, code))
    meters = [
        DlmsMeter(
            SimulatedMeter(
                meter=Meter(
                    id=f"D{k:04d}", service="1p2w" if k % 3 == 2 else "3p4w", nominal_v=230
                ),
                seed=args.seed + k,
                base_kw=3.0,
            ),
            events.get(k, ()),
            log_capacity=args.log_capacity,
            neutral=k not in args.no_neutral,
        )
        for k in range(args.meters)
    ]
    if args.lls_password:
        for dlms_meter in meters:
            dlms_meter.server.clients[17] = ClientProfile(
                Mechanism.LLS, secret=args.lls_password.encode()
            )
    servers = serve_meters(meters, args.port, args.hdlc)
    print(f"listening on {args.port}..{args.port + len(servers) - 1}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        for server in servers:
            server.shutdown()


if __name__ == "__main__":
    main()
