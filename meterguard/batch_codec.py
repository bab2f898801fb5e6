"""A compact binary form of a ReadingBatch, for the partitioned log between processes.

Layout (little-endian): a header (magic `MGB1`, the fleet digest, rows, a bit per
quantity sent, the length of the unknown-event part), then the arrays as raw bytes: ts
(float64), slot (int32), events (uint32), one float64 row per quantity whose bit is set
(a quantity no row measured is left out and comes back as NaN), and the unknown event
codes by row as JSON. Decoding checks every length before it reads, so a damaged or
foreign message is a BatchCodecError, never a wrong batch.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from meterguard.errors import MeterguardError
from meterguard.model import QUANTITIES, ReadingBatch

MAGIC = b"MGB1"
_HEADER = struct.Struct("<4s8sIII")
_MAX_ROWS = 10_000_000


class BatchCodecError(MeterguardError):
    """A message is not a batch of this fleet in this format."""


def encode_batch(batch: ReadingBatch, digest: bytes) -> bytes:
    """Return the batch as bytes, stamped with the fleet digest (8 bytes)."""
    if len(digest) != 8:
        raise ValueError("the fleet digest has 8 bytes")
    measured = ~np.isnan(batch.values).all(axis=1) if len(batch) else np.zeros(0, bool)
    present = np.flatnonzero(measured)
    mask = int(sum(1 << int(q) for q in present))
    unknown = (
        json.dumps({str(r): list(c) for r, c in batch.unknown_events.items()}).encode()
        if batch.unknown_events
        else b""
    )
    parts = [
        _HEADER.pack(MAGIC, digest, len(batch), mask, len(unknown)),
        np.ascontiguousarray(batch.ts, dtype="<f8").tobytes(),
        np.ascontiguousarray(batch.slot, dtype="<i4").tobytes(),
        np.ascontiguousarray(batch.events, dtype="<u4").tobytes(),
        np.ascontiguousarray(batch.values[present], dtype="<f8").tobytes(),
        unknown,
    ]
    return b"".join(parts)


def decode_batch(data: bytes, digest: bytes, meters: int) -> ReadingBatch:
    """Return the batch a message carries; BatchCodecError if it is damaged or foreign.

    `digest` and `meters` are those of the receiver's fleet: every slot must name one.
    """
    if len(data) < _HEADER.size:
        raise BatchCodecError(f"a batch message has {_HEADER.size} bytes at least, got {len(data)}")
    magic, sender, n, mask, unknown_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BatchCodecError(f"not a reading batch (magic {magic!r})")
    if sender != digest:
        raise BatchCodecError("a batch of another fleet (meters.csv differs between processes)")
    if n > _MAX_ROWS or mask >> len(QUANTITIES):
        raise BatchCodecError(f"implausible header: {n} rows, quantity mask {mask:#x}")
    present = [q for q in range(len(QUANTITIES)) if mask >> q & 1]
    expected = _HEADER.size + n * (8 + 4 + 4 + 8 * len(present)) + unknown_len
    if len(data) != expected:
        raise BatchCodecError(f"a batch of {n} rows has {expected} bytes, got {len(data)}")
    view = memoryview(data)
    at = _HEADER.size

    def take(dtype: str, count: int) -> npt.NDArray[Any]:
        nonlocal at
        array = np.frombuffer(view, dtype=dtype, count=count, offset=at)
        at += array.nbytes
        return array

    ts = take("<f8", n).astype(np.float64)
    slot = take("<i4", n).astype(np.int32)
    events = take("<u4", n).astype(np.uint32)
    values = np.full((len(QUANTITIES), n), np.nan)
    if present:
        values[present] = take("<f8", n * len(present)).reshape(len(present), n)
    unknown: dict[int, list[str]] = {}
    if unknown_len:
        try:
            raw = json.loads(bytes(view[at : at + unknown_len]))
            unknown = {int(r): [str(c) for c in codes] for r, codes in raw.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise BatchCodecError(f"unknown event codes unreadable: {exc}") from exc
        if any(not 0 <= r < n for r in unknown):
            raise BatchCodecError("unknown event codes name rows outside the batch")
    if n and (int(slot.min()) < 0 or int(slot.max()) >= meters):
        raise BatchCodecError(f"meter slots outside the fleet of {meters} meters")
    return ReadingBatch(ts=ts, slot=slot, values=values, events=events, unknown_events=unknown)
