"""Snapshots: an engine loaded from one goes on exactly as the one that wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.engine import Engine, build_detectors
from meterguard.meters_csv import read_meters_csv
from meterguard.model import MeterRegistry
from meterguard.partitioning import fleet_digest
from service.replay import split_by_time
from service.scale.snapshots import SnapshotError, decode_snapshot, encode_snapshot
from service.telemetry_csv import ReadingsReader


def test_a_loaded_engine_emits_what_the_written_one_would(small_fleet: Path) -> None:
    registry = MeterRegistry(read_meters_csv(small_fleet / "meters.csv"))
    digest = fleet_digest(registry)
    batches = [
        b
        for chunk in ReadingsReader(small_fleet / "readings.csv", registry)
        for b in split_by_time(chunk, 300.0)
    ]
    half = len(batches) // 2
    writer = Engine(registry, build_detectors({}, registry))
    for batch in batches[:half]:
        writer.process(batch)
    snapshot = decode_snapshot(encode_snapshot(writer, 41, digest, 8), digest, 8)
    assert snapshot.seq == 41
    loaded = snapshot.engine
    went_on, resumed = [], []
    for batch in batches[half:]:
        went_on += [(e.type, e.alert.model_dump()) for e in writer.process(batch)]
        resumed += [(e.type, e.alert.model_dump()) for e in loaded.process(batch)]
    assert len(went_on) > 50  # opens, updates and clears after the snapshot
    assert resumed == went_on


def test_a_snapshot_of_another_deployment_or_damaged_is_refused() -> None:
    registry = MeterRegistry()
    engine = Engine(registry, build_detectors({}, registry))
    data = encode_snapshot(engine, 7, b"fleet-01", 8)
    with pytest.raises(SnapshotError, match="another fleet"):
        decode_snapshot(data, b"fleet-02", 8)
    with pytest.raises(SnapshotError, match="another fleet"):
        decode_snapshot(data, b"fleet-01", 16)  # repartitioned
    with pytest.raises(SnapshotError, match="unreadable"):
        decode_snapshot(data[: len(data) // 2], b"fleet-01", 8)
    with pytest.raises(SnapshotError, match="header"):
        decode_snapshot(b"garbage", b"fleet-01", 8)
