"""Partitions by transformer: every detector's state is per meter or per transformer.

A meter's partition is a stable hash of its transformer id (of its own id when it has
none), so every meter of a transformer, its check meter included, lands in one partition
and one worker sees all it needs. The hash is 32-bit FNV-1a modulo the partition count,
the function of NATS's `{{partition(n, ...)}}` subject mapping, so a deployment may let
the server partition subjects that carry the transformer id and land in the same place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterguard.model import Meter, MeterRegistry, ReadingBatch

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """Return the 32-bit FNV-1a hash of `data`."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def partition_key(meter: Meter) -> str:
    """Return what a meter is partitioned by: its transformer, or itself when it has none."""
    return meter.transformer if meter.transformer else meter.id


def partition_of(key: str, partitions: int) -> int:
    """Return the partition of a key, in 0..partitions-1."""
    if partitions < 1:
        raise ValueError("there is at least one partition")
    return fnv1a_32(key.encode()) % partitions


def fleet_digest(registry: MeterRegistry) -> bytes:
    """Return 8 bytes naming the fleet's meters in slot order.

    A batch carries slots, which mean the same meters only to processes that loaded the
    same fleet: the digest travels with each batch so a worker refuses a foreign one.
    """
    h = hashlib.blake2b(digest_size=8)
    for meter in registry:
        h.update(meter.id.encode())
        h.update(b"\0")
    return h.digest()


@dataclass(frozen=True, slots=True)
class PartitionFleet:
    """The meters of one partition as a registry of their own, and the slot mapping."""

    partition: int
    registry: MeterRegistry
    #: Per fleet slot, the slot in `registry` (-1: a meter of another partition).
    local_slot: npt.NDArray[np.int32]

    def localise(self, batch: ReadingBatch) -> ReadingBatch:
        """Return a batch of fleet slots with this partition's slots (foreign rows dropped)."""
        local = self.local_slot[batch.slot]
        if (local < 0).any():
            batch = batch.take(np.flatnonzero(local >= 0))
            local = self.local_slot[batch.slot]
        return ReadingBatch(
            ts=batch.ts,
            slot=local.astype(np.int32),
            values=batch.values,
            events=batch.events,
            unknown_events=batch.unknown_events,
        )


class Partitioner:
    """Maps a fleet's meters to partitions and splits batches by them."""

    def __init__(self, registry: MeterRegistry, partitions: int) -> None:
        self.registry = registry
        self.partitions = partitions
        #: Partition of each fleet slot.
        self.of_slot = np.fromiter(
            (partition_of(partition_key(m), partitions) for m in registry),
            dtype=np.int32,
            count=len(registry),
        )

    def split(self, batch: ReadingBatch) -> dict[int, ReadingBatch]:
        """Return the batch's rows by partition, each in the batch's order."""
        if len(batch) == 0:
            return {}
        parts = self.of_slot[batch.slot]
        if (parts == parts[0]).all():
            return {int(parts[0]): batch}
        order = np.argsort(parts, kind="stable")
        ordered = parts[order]
        cuts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), len(order)]
        return {int(ordered[a]): batch.take(order[a:b]) for a, b in zip(starts, ends, strict=True)}

    def fleet(self, partition: int) -> PartitionFleet:
        """Return the registry of one partition's meters, in fleet order."""
        members = np.flatnonzero(self.of_slot == partition)
        local = np.full(len(self.registry), -1, dtype=np.int32)
        local[members] = np.arange(len(members), dtype=np.int32)
        registry = MeterRegistry(self.registry.by_slot(int(s)) for s in members)
        return PartitionFleet(partition, registry, local)
