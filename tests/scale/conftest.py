"""Fixtures of the partitioned mode's tests: a private nats-server, a simulated fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from bench.scale_out import nats_server, simulate
from meterguard.alerting import AlertService
from meterguard.broadcast import AlertBroadcaster
from meterguard.model import MeterRegistry
from meterguard.partitioning import Partitioner, fleet_digest
from meterguard.runtime import Counters
from meterguard.settings import Settings
from meterguard.stores.alertdb import AlertDatabase
from service.scale.partition import PartitionRunner
from tests.tiers import require_marker


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A private nats-server with JetStream on a free 127.0.0.1 port, for one test."""
    require_marker("nats", "a private nats-server")
    with nats_server(tmp_path / "nats") as url:
        yield url


@pytest.fixture(scope="session")
def small_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated day of 120 customer meters on a few transformers, with incidents."""
    out = tmp_path_factory.mktemp("fleet")
    simulate(out, meters=120, days=1, seed=7)
    return out


def partition_runner(
    registry: MeterRegistry,
    settings: Settings,
    js: JetStreamContext,
    db: AlertDatabase,
    partition: int,
) -> PartitionRunner:
    """A runner for one partition of `registry`, writing to `db`, its lease always held."""
    return PartitionRunner(
        Partitioner(registry, settings.scale.partitions).fleet(partition),
        settings,
        js,
        db.alerts,
        AlertService(db.alerts, db.cases, AlertBroadcaster(), Counters()),
        fleet_digest(registry),
        len(registry),
        lambda: True,
    )
