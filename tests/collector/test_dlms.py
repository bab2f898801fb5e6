"""The DLMS source (gurux-dlms) against the pydlms simulator process, wrapper and HDLC."""

import asyncio
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from collector.dlms import DlmsSource
from meterguard.model import Meter, MeterEvent, MeterRegistry, ReadingBatch
from meterguard.settings import DlmsSourceSettings
from meterguard.status import StatusBoard

FLEET = [
    Meter(id="D0", service="3p4w", nominal_v=230),
    Meter(id="D1", service="3p4w", nominal_v=230),
    Meter(id="D2", service="1p2w", nominal_v=230),
]


def _free_ports(n: int) -> int:
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
    port = _free_ports(3)
    # Meter 0: cover opened 1.5 s after start; meter 1: IDIS 93 (inverse current), which
    # the model has no bit for and which is kept by code.
    with simulator(port, transport == "hdlc", ["0:1.5:44", "1:1.5:93"]):
        batches: list[ReadingBatch] = []
        async with _source(port, transport) as source:
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                batches.append(await source.poll_once())
                await asyncio.sleep(0.2)
    assert source.counters["associations"] == 3  # kept open across polls
    assert source.counters["failures"] == 0
    batch = ReadingBatch.concat(batches)
    assert len(batch) == 3 * len(batches)
    for row in range(len(batch)):
        single = batch.slot[row] == 2
        v1, i1, p1 = batch.col("v1")[row], batch.col("i1")[row], batch.col("p1")[row]
        assert 200 < v1 < 250  # scaler -1: read as tenths of a volt
        assert batch.col("f")[row] == pytest.approx(50.0, abs=0.1)  # scaler -2
        # The simulated load has power factor 0.95: P = V I pf within register resolution.
        assert p1 == pytest.approx(v1 * i1 * 0.95, rel=0.02)
        assert math.isnan(batch.col("v3")[row]) == single
    cover = [r for r in range(len(batch)) if batch.events[r] & MeterEvent.COVER_OPEN]
    assert len(cover) == 1
    assert batch.slot[cover[0]] == 0
    assert list(batch.unknown_events.values()) == [["dlms_event_93"]]
    assert int(batch.events.sum()) == int(MeterEvent.COVER_OPEN)


async def test_association_is_made_again_after_the_meter_restarts() -> None:
    port = _free_ports(3)
    source = _source(port, "wrapper")
    async with source:
        with simulator(port, False, []):
            first = await source.poll_once()
        failed = await source.poll_once()  # the meters are gone
        with simulator(port, False, []):
            recovered = ReadingBatch.empty(0)
            deadline = time.monotonic() + 10
            while len(recovered) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                recovered = await source.poll_once()
    assert len(first) == 3
    assert len(failed) == 0
    assert len(recovered) == 3
    assert source.counters["associations"] == 6
    assert source.counters["failures"] >= 3


@pytest.mark.parametrize(("password", "answers"), [("12345678", 3), ("wrong", 0)])
async def test_low_level_security_password(password: str, answers: int) -> None:
    port = _free_ports(3)
    with simulator(port, True, [], ("--lls-password", "12345678")):
        source = _source(port, "hdlc", client_address=17, password=password)
        async with source:
            batch = await source.poll_once()
    assert len(batch) == answers
    assert source.counters["failures"] == 3 - answers
