"""Partitions by transformer: stable, whole transformers together, batches split losslessly."""

from __future__ import annotations

import numpy as np

from meterguard.model import Meter, MeterRegistry
from meterguard.partitioning import Partitioner, fnv1a_32, partition_key, partition_of
from tests.conftest import make_batch


def _fleet() -> MeterRegistry:
    meters = []
    for t in range(6):
        meters.append(
            Meter(id=f"T{t}-FDR", service="3p4w", nominal_v=230, transformer=f"T{t}", role="feeder")
        )
        meters += [
            Meter(id=f"M{t}-{i}", service="1p2w", nominal_v=230, transformer=f"T{t}")
            for i in range(3)
        ]
    meters += [Meter(id=f"LONE{i}", service="1p2w", nominal_v=230) for i in range(4)]
    return MeterRegistry(meters)


def test_fnv1a_is_the_published_function() -> None:
    # Test vectors of the FNV reference (32-bit FNV-1a), the hash of NATS's partition().
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_a_transformer_lands_in_one_partition_and_a_lone_meter_by_itself() -> None:
    fleet = _fleet()
    part = Partitioner(fleet, 4)
    for meter in fleet:
        expected = partition_of(meter.transformer or meter.id, 4)
        assert part.of_slot[fleet.slot(meter.id)] == expected
    assert partition_key(fleet.get("LONE0")) == "LONE0"  # type: ignore[arg-type]
    by_transformer: dict[str, set[int]] = {}
    for meter in fleet:
        if meter.transformer:
            by_transformer.setdefault(meter.transformer, set()).add(
                int(part.of_slot[fleet.slot(meter.id)])
            )
    assert all(len(parts) == 1 for parts in by_transformer.values())


def test_split_keeps_every_row_once_in_order_and_localises() -> None:
    fleet = _fleet()
    part = Partitioner(fleet, 3)
    rows = [(1000.0 + i, i % len(fleet), {"v1": 200.0 + i}) for i in range(60)]
    batch = make_batch(rows)
    pieces = part.split(batch)
    assert sum(len(p) for p in pieces.values()) == len(batch)
    for p, piece in pieces.items():
        assert (part.of_slot[piece.slot] == p).all()
        assert (np.diff(piece.ts) > 0).all()  # the batch's order within a partition
        local = part.fleet(p)
        moved = local.localise(piece)
        ids = [local.registry.by_slot(int(s)).id for s in moved.slot]
        assert ids == [fleet.by_slot(int(s)).id for s in piece.slot]
        assert np.array_equal(moved.col("v1"), piece.col("v1"))
    # Rows of another partition are dropped by localise, never given a wrong meter.
    first = next(iter(pieces))
    assert len(part.fleet((first + 1) % 3).localise(pieces[first])) == 0
