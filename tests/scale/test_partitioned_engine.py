"""An engine per partition judges as one engine over the whole fleet does.

This is what makes the partitioned mode correct: every detector's state is per meter or
per transformer, and a partition holds whole transformers, so the alerts of the
partitions' engines together are the single engine's alerts (meter, kind, phase, start),
whatever the partition count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.engine import Engine, build_detectors
from meterguard.meters_csv import read_meters_csv
from meterguard.model import Alert, MeterRegistry
from meterguard.partitioning import Partitioner
from meterguard.validation import ReadingValidator
from service.replay import split_by_time
from service.telemetry_csv import ReadingsReader


def _key(alert: Alert) -> tuple[str, str, int | None, float]:
    return (alert.meter, alert.kind.value, alert.phase, alert.start)


@pytest.mark.parametrize("partitions", [3, 8])
def test_partition_engines_raise_the_single_engines_alerts(
    small_fleet: Path, partitions: int
) -> None:
    registry = MeterRegistry(read_meters_csv(small_fleet / "meters.csv"))
    split = Partitioner(registry, partitions)
    fleets = {p: split.fleet(p) for p in range(partitions)}
    engines = {p: Engine(f.registry, build_detectors({}, f.registry)) for p, f in fleets.items()}
    single = Engine(registry, build_detectors({}, registry))
    validator = ReadingValidator(registry)
    one: dict[str, Alert] = {}
    parted: dict[str, Alert] = {}
    for chunk in ReadingsReader(small_fleet / "readings.csv", registry):
        for batch in split_by_time(validator.check(chunk), 300.0):
            one.update((e.alert.id, e.alert) for e in single.process(batch))
            for p, piece in split.split(batch).items():
                events = engines[p].process(fleets[p].localise(piece))
                parted.update((e.alert.id, e.alert) for e in events)
    one.update((a.id, a) for a in single.open_alerts())
    for engine in engines.values():
        parted.update((a.id, a) for a in engine.open_alerts())
    assert len(one) >= 20
    assert {_key(a) for a in parted.values()} == {_key(a) for a in one.values()}
