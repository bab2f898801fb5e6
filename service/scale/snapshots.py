"""Snapshots of a partition's engine, so that a new owner need not replay the whole window.

The owner of a partition writes its engine's state every `snapshot_every_s`, with the
stream sequence of the last message it judged, to a JetStream object store (one object
per partition, replaced each time). A worker taking the partition over loads it and
consumes from the next message: the engine goes on from the same state, so it emits the
same events as the previous owner would have. A snapshot of another fleet, partition
count or format is ignored (the worker replays the window instead).

The state is pickled (the engine's numpy arrays and incident records as they are), and
unpickling runs whatever the bytes say: only workers may write the bucket, which the
NATS account's permissions must ensure, as they must for the readings stream.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from detectors.engine import Engine
from meterguard.errors import MeterguardError
from meterguard.settings import ScaleSettings

log = logging.getLogger(__name__)

#: Raised whenever a detector's or the engine's state changes shape, so that a worker of a
#: new release replays the window instead of loading an engine it cannot run (2: the
#: consumption-drop detector's balance against the loss allowance; 3: the transformers'
#: loss curve; 4: the consumption-drop detector's stand-in day types; 5: its service
#: cables; 6: the supply phases they are read against; 7: the spread its sum was read in;
#: 8: the energy balance's day before; 9: the hours each meter has closed, for judging;
#: 10: the engine's watch for days of rest; 11: the days of rest it found, and each
#: meter's sum as a working day began; 12: the other detectors' alerts the consumption-drop
#: detector weighs; 13: the CT-ratio detector's working days; 14: the hours in which each
#: meter had an alert of another kind open).
FORMAT = 14


class SnapshotError(MeterguardError):
    """A snapshot that does not belong to this fleet, partitioning or format."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An engine's state after judging every message up to `seq`."""

    seq: int
    engine: Engine


def encode_snapshot(engine: Engine, seq: int, digest: bytes, partitions: int) -> bytes:
    """Return a snapshot as bytes: one JSON header line, then the pickled engine."""
    header = {"format": FORMAT, "seq": seq, "fleet": digest.hex(), "partitions": partitions}
    return json.dumps(header).encode() + b"\n" + pickle.dumps(engine, protocol=5)


def decode_snapshot(data: bytes, digest: bytes, partitions: int) -> Snapshot:
    """Return the snapshot in `data`; SnapshotError if it is not one of this deployment."""
    head, sep, body = data.partition(b"\n")
    try:
        header = json.loads(head)
        ours = (
            header["format"] == FORMAT
            and header["fleet"] == digest.hex()
            and header["partitions"] == partitions
        )
        seq = int(header["seq"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"unreadable snapshot header: {exc}") from exc
    if not sep or not ours:
        raise SnapshotError("a snapshot of another fleet, partition count or format")
    try:
        engine = pickle.loads(body)  # written by workers only: see the module docstring
    except Exception as exc:  # damaged bytes fail in many ways; none may stop a worker
        raise SnapshotError(f"unreadable snapshot: {exc!r}") from exc
    if not isinstance(engine, Engine):
        raise SnapshotError(f"a snapshot holds a {type(engine).__name__}, not an engine")
    return Snapshot(seq, engine)


class SnapshotStore:
    """The snapshots of every partition, in one JetStream object store bucket."""

    def __init__(self, js: JetStreamContext, settings: ScaleSettings) -> None:
        self.js = js
        self.settings = settings
        self._bucket = settings.snapshot_bucket

    def _name(self, partition: int) -> str:
        return f"{self.settings.stream}.{partition}"

    async def open(self) -> None:
        """Create the bucket if it is missing."""
        await self.js.create_object_store(self._bucket)

    async def save(self, partition: int, data: bytes) -> None:
        """Replace a partition's snapshot."""
        store = await self.js.object_store(self._bucket)
        await store.put(self._name(partition), data)

    async def load(self, partition: int) -> bytes | None:
        """Return a partition's latest snapshot, None if it has none."""
        store = await self.js.object_store(self._bucket)
        try:
            result = await store.get(self._name(partition))
        except (ObjectNotFoundError, NotFoundError):
            return None
        return result.data or None
