"""`meterguard ingest` on a live Modbus gateway: polled readings reach the stream by partition.

The command runs as an operator starts it (a process, the config's [[sources]]); SIGTERM
stops it cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import nats

from meterguard.batch_codec import decode_batch
from meterguard.model import MeterRegistry
from meterguard.partitioning import fleet_digest
from meterguard.settings import ScaleSettings
from service.scale.stream import last_sequence, subject
from simulators.fleet import demo_fleet
from simulators.modbus_gateway import ModbusGateway
from tests.conftest import free_port

METERS = 4
PARTITIONS = 3


def _config(path: Path, port: int, nats_url: str, meters: Sequence[tuple[str, str]]) -> Path:
    lines = [f'[storage]\ndata_dir = "{path / "data"}"', "[scale]"]
    lines += [f'nats_url = "{nats_url}"', f"partitions = {PARTITIONS}"]
    for meter_id, service in meters:
        lines += ["[[meters]]", f'id = "{meter_id}"', f'service = "{service}"']
        lines += ["nominal_v = 230", f'transformer = "T-{meter_id}"']
    lines += ["[[sources]]", 'type = "modbus"', 'name = "gw"', f"port = {port}"]
    lines += ["interval_s = 0.5", "timeout_s = 1.0"]
    for unit, (meter_id, _service) in enumerate(meters, start=1):
        lines += ["[[sources.devices]]", f'meter = "{meter_id}"', f"unit = {unit}"]
    config = path / "ingest.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "ingest", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


async def _published(nats_url: str, registry: MeterRegistry) -> set[str]:
    """Return the meters whose readings the stream holds, checking each message's partition."""
    settings = ScaleSettings(nats_url=nats_url, partitions=PARTITIONS)
    nc = await nats.connect(nats_url)
    meters: set[str] = set()
    try:
        js = nc.jetstream()
        for p in range(PARTITIONS):
            if not await last_sequence(js, settings, p):
                continue
            sub = await js.pull_subscribe(subject(settings, p), stream=settings.stream)
            for msg in await sub.fetch(50, timeout=2):
                batch = decode_batch(msg.data, fleet_digest(registry), len(registry))
                meters |= {registry.by_slot(int(s)).id for s in batch.slot}
            await sub.unsubscribe()
    finally:
        await nc.close()
    return meters


async def test_ingest_publishes_a_polled_gateways_readings(nats_url: str, tmp_path: Path) -> None:
    fleet, _ = demo_fleet(METERS, seed=5, thieves=0, solar=0)
    port = free_port()
    meters = [(sim.meter.id, sim.meter.service) for sim in fleet]
    config = _config(tmp_path, port, nats_url, meters)
    registry = MeterRegistry(sim.meter for sim in fleet)
    gateway = ModbusGateway([(u + 1, sim) for u, sim in enumerate(fleet)], port=port)
    async with gateway:
        proc = _start(config, tmp_path / "ingest.log")
        try:
            deadline = time.monotonic() + 60
            seen: set[str] = set()
            while time.monotonic() < deadline and seen != {m for m, _s in meters}:
                await asyncio.sleep(0.5)
                seen = await _published(nats_url, registry)
        finally:
            proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(proc.wait, 30)
    assert seen == {m for m, _s in meters}, (tmp_path / "ingest.log").read_text()
    assert returncode == 0, (tmp_path / "ingest.log").read_text()
