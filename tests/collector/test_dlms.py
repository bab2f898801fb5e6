"""The DLMS source (gurux-dlms) against the pydlms simulator process, wrapper and HDLC."""

import asyncio
import math
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from collector.dlms import DlmsSourceSettings
from collector.dlms_gurux import DlmsSource
from meterguard.model import Meter, MeterEvent, MeterRegistry, ReadingBatch
from meterguard.status import StatusBoard, failure_count

FLEET = [
    Meter(id="D0", service="3p4w", nominal_v=230),
    Meter(id="D1", service="3p4w", nominal_v=230),
    Meter(id="D2", service="1p2w", nominal_v=230),
]


def free_ports(n: int) -> int:
    """Return the first of n consecutive free ports."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + n > 65535:
            continue
        socks = []
        try:
            for k in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no consecutive free ports")


@contextmanager
def simulator(
    port: int, hdlc: bool, events: list[str], extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """Run simulators.dlms_server (GPL pydlms) as its own process until the block ends."""
    args = [sys.executable, "-m", "simulators.dlms_server", "--port", str(port), "--meters", "3"]
    args += list(extra)
    args += ["--hdlc"] if hdlc else []
    for event in events:
        args += ["--event", event]
    process = subprocess.Popen(args, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(b"listening"), line
        yield process
    finally:
        process.terminate()
        process.wait(10)


def _source(port: int, transport: str, **extra: object) -> DlmsSource:
    settings = DlmsSourceSettings.model_validate(
        {
            **extra,
            "name": "dlms",
            "transport": transport,
            "interval_s": 0.2,
            "timeout_s": 2.0,
            "event_interval_s": 0.2,
            "backoff_max_s": 0.5,
            "devices": [{"meter": m.id, "port": port + k} for k, m in enumerate(FLEET)],
        }
    )
    return DlmsSource(settings, MeterRegistry(FLEET), StatusBoard())


@pytest.mark.parametrize("transport", ["wrapper", "hdlc"])
async def test_registers_with_scaler_and_unit_and_tamper_events(transport: str) -> None:
    port = free_ports(3)
    # Meter 0: cover opened 1.5 s after start; meter 1: IDIS 93 (inverse current), which
    # the model has no bit for and which is kept by code; meter 2: a cover opened two
    # days ago, history on the first read of its log, never reported.
    events = ["0:1.5:44", "1:1.5:93", "2:-172800:44"]
    with simulator(port, transport == "hdlc", events):
        batches: list[ReadingBatch] = []
        async with _source(port, transport) as source:
            # Until both events are in, under a generous deadline; then a few more rounds,
            # which must not report them again.
            async with asyncio.timeout(30):
                while source.counters["events"] < 2:
                    batches.append(await source.poll_once())
            for _ in range(3):
                batches.append(await source.poll_once())
    assert source.counters["associations"] == 3  # kept open across polls
    assert failure_count(source.counters) == 0
    batch = ReadingBatch.concat(batches)
    assert len(batch) == 3 * len(batches)
    for row in range(len(batch)):
        single = batch.slot[row] == 2
        v1, i1, p1 = batch.col("v1")[row], batch.col("i1")[row], batch.col("p1")[row]
        assert 200 < v1 < 250  # scaler -1: read as tenths of a volt
        assert batch.col("f")[row] == pytest.approx(50.0, abs=0.1)  # scaler -2
        # The simulated load has power factor 0.95: P = V I pf. V, I and P may come from
        # different requests (at most 10 attributes per get-with-list) while the load
        # moves a few per cent between them; a scaler error would be a factor of 10.
        assert p1 == pytest.approx(v1 * i1 * 0.95, rel=0.1)
        assert math.isnan(batch.col("v3")[row]) == single
    cover = [r for r in range(len(batch)) if batch.events[r] & MeterEvent.COVER_OPEN]
    assert len(cover) == 1
    assert batch.slot[cover[0]] == 0
    assert list(batch.unknown_events.values()) == [["dlms_event_93"]]
    assert int(batch.events.sum()) == int(MeterEvent.COVER_OPEN)
    assert source.counters["events"] == 2


async def test_events_are_found_after_the_ring_buffer_log_is_full() -> None:
    port = free_ports(3)
    # Meter 0's log keeps two entries; five events a second apart overwrite it twice,
    # so the entry count sticks at 2 from the second event on.
    codes = [40, 41, 44, 45, 42]
    events = [f"0:{k + 1}:{code}" for k, code in enumerate(codes)]
    with simulator(port, False, events, ("--log-capacity", "2")):
        batches: list[ReadingBatch] = []
        async with _source(port, "wrapper") as source:
            async with asyncio.timeout(40):
                while source.counters["events"] < len(codes):
                    batches.append(await source.poll_once())
            for _ in range(3):
                batches.append(await source.poll_once())
    batch = ReadingBatch.concat(batches)
    flagged = [int(batch.events[r]) for r in range(len(batch)) if batch.events[r]]
    assert source.counters["events"] == len(codes)
    # Each event exactly once, in order (two may share a round).
    assert sum(bin(mask).count("1") for mask in flagged) == len(codes)
    for flag in (
        MeterEvent.TERMINAL_COVER_OPEN,
        MeterEvent.TERMINAL_COVER_CLOSED,
        MeterEvent.COVER_OPEN,
        MeterEvent.COVER_CLOSED,
        MeterEvent.MAGNETIC_FIELD,
    ):
        assert sum(1 for mask in flagged if mask & flag) == 1
    assert all(batch.slot[r] == 0 for r in range(len(batch)) if batch.events[r])


async def test_a_meter_without_neutral_element_leaves_the_neutral_current_unmeasured() -> None:
    port = free_ports(3)
    with simulator(port, False, [], ("--no-neutral", "1")):
        async with _source(port, "wrapper") as source:
            batch = await source.poll_once()
    assert batch.slot.tolist() == [0, 1, 2]
    neutral = batch.col("in")
    assert neutral[0] > 0  # a three-phase meter with its neutral element
    assert math.isnan(neutral[1])  # the register is absent, not 0


async def _slow_proxy(target: int, delay_s: float) -> tuple[asyncio.Server, int]:
    """Forward a TCP port to `target`, holding every answer back by `delay_s`."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, d: float) -> None:
        try:
            while chunk := await reader.read(4096):
                await asyncio.sleep(d)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer, 0.0), pipe(up_reader, writer, delay_s))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_a_slow_meter_does_not_hold_back_the_others() -> None:
    port = free_ports(3)
    with simulator(port, False, []):
        # Meter 1 answers each frame within the timeout, but its association (some twenty
        # frames) takes far longer than one round.
        proxy, proxy_port = await _slow_proxy(port + 1, 0.1)
        settings = DlmsSourceSettings.model_validate(
            {
                "name": "dlms",
                "interval_s": 0.2,
                "timeout_s": 1.0,
                "event_interval_s": 0.2,
                "devices": [
                    {"meter": "D0", "port": port},
                    {"meter": "D1", "port": proxy_port},
                    {"meter": "D2", "port": port + 2},
                ],
            }
        )
        status = StatusBoard()
        rounds: list[list[int]] = []
        async with proxy, DlmsSource(settings, MeterRegistry(FLEET), status) as source:
            async with asyncio.timeout(60):
                while 1 not in [slot for r in rounds for slot in r]:
                    rounds.append((await source.poll_once()).slot.tolist())
    # The fast meters answered in every round, the slow one joined later without a failure.
    assert rounds[0] == [0, 2]
    assert all({0, 2} <= set(r) for r in rounds)
    assert len(rounds) > 2
    assert failure_count(source.counters) == 0
    d1 = status.get("D1")
    assert d1 is not None
    assert d1.errors == 0


async def test_association_is_made_again_after_the_meter_restarts() -> None:
    port = free_ports(3)
    source = _source(port, "wrapper")
    async with source:
        with simulator(port, False, []):
            first = await source.poll_once()
        failed = await source.poll_once()  # the meters are gone
        with simulator(port, False, []):
            recovered = ReadingBatch.empty(0)
            async with asyncio.timeout(20):
                while len(recovered) < 3:
                    await asyncio.sleep(0.2)  # the meters back off while they were away
                    recovered = await source.poll_once()
    assert len(first) == 3
    assert len(failed) == 0
    assert len(recovered) == 3
    assert source.counters["associations"] == 6
    # The meters went away: their connections closed, then were refused (never a slow meter).
    assert failure_count(source.counters) >= 3
    assert source.counters["unreachable"] == failure_count(source.counters)


@pytest.mark.parametrize(("password", "answers"), [("12345678", 3), ("wrong", 0)])
async def test_low_level_security_password(password: str, answers: int) -> None:
    port = free_ports(3)
    with simulator(port, True, [], ("--lls-password", "12345678")):
        source = _source(port, "hdlc", client_address=17, password=password)
        async with source:
            batch = await source.poll_once()
    assert len(batch) == answers
    assert failure_count(source.counters) == 3 - answers
    # A wrong password: the meter refuses the association, the device's own answer.
    assert source.counters["device_exception"] == 3 - answers
