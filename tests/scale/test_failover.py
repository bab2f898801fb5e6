"""Ingest, two workers and JetStream; one worker killed mid-run; alerts as one process has them.

The same readings are replayed by the single-process engine first. The partitioned run
must store exactly those alerts (meter, kind, phase, start), none lost, none opened twice
or changed after its clear, and the killed worker's partitions must be judged again by
the other within 30 s: replaying each partition's retained window, or loading the
dead worker's latest snapshot of it and replaying what followed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale_out import scale_out


@pytest.mark.postgres
@pytest.mark.apart  # its own nats-server and database; waits out a lease
@pytest.mark.parametrize("snapshot_every_s", [0.0, 1.0], ids=["replay", "snapshot"])
def test_killed_worker_loses_and_repeats_no_alert(
    nats_url: str, small_fleet: Path, tmp_path: Path, snapshot_every_s: float
) -> None:
    outcome = scale_out(
        small_fleet,
        tmp_path,
        workers=2,
        kill_one=True,
        partitions=8,
        ttl=4.0,
        timeout=120.0,
        nats_url=nats_url,
        snapshot_every_s=snapshot_every_s,
    )
    assert outcome.reference_alerts >= 20  # a fleet with incidents, or the test proves little
    assert outcome.lost == 0
    assert outcome.duplicated == 0
    assert outcome.alerts_identical
    assert outcome.takeover_s is not None
    assert outcome.takeover_s < 30.0
    # With snapshots, the new owner starts from the dead one's state, not the window's start.
    assert (outcome.taken_from_snapshots > 0) == (snapshot_every_s > 0)
