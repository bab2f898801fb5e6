"""Shared fixtures: small fleets, batches built by hand, free ports."""

from __future__ import annotations

import socket
from collections.abc import Sequence

import numpy as np
import pytest

from meterguard.model import QUANTITY_INDEX, Meter, MeterRegistry, ReadingBatch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_batch(rows: Sequence[tuple[float, int, dict[str, float]]]) -> ReadingBatch:
    """Build a batch from (ts, slot, {quantity: value}) rows."""
    batch = ReadingBatch.empty(len(rows))
    for r, (ts, slot, values) in enumerate(rows):
        batch.ts[r] = ts
        batch.slot[r] = slot
        for q, v in values.items():
            batch.values[QUANTITY_INDEX[q], r] = v
    return batch


@pytest.fixture
def registry() -> MeterRegistry:
    return MeterRegistry(
        [
            Meter(id="HONEST", service="3p4w", nominal_v=230, transformer="T1"),
            Meter(id="SOLAR", service="3p4w", nominal_v=230, generation=True, transformer="T1"),
            Meter(id="SINGLE", service="1p2w", nominal_v=230, transformer="T1"),
            Meter(id="FEEDER", service="3p4w", nominal_v=230, role="feeder", transformer="T1"),
        ]
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)
