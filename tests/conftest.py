"""Shared fixtures: small fleets, batches built by hand, free ports; the servers' markers."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from meterguard.model import QUANTITY_INDEX, Meter, MeterRegistry, ReadingBatch
from tests import tiers


def pytest_configure(config: pytest.Config) -> None:
    tiers.watch_machine_servers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.mark_by_fixtures(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with tiers.running(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with tiers.running(item):
        return (yield)


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
