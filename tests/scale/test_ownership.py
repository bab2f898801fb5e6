"""Partition ownership: workers share the partitions evenly; a dead one's are taken over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.stores.alertdb import AlertDatabase, sqlite_url
from service.scale.ownership import Ownership
from service.scale.partition import already_stored

PARTITIONS = 8
TTL_S = 1.5


async def test_workers_share_out_and_take_over_a_silent_ones_partitions(tmp_path: Path) -> None:
    db = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    try:
        a = Ownership(db.leases, "S", PARTITIONS, "worker-a", TTL_S)
        b = Ownership(db.leases, "S", PARTITIONS, "worker-b", TTL_S)
        taken_a, _ = await a.tick()
        assert sorted(taken_a) == list(range(PARTITIONS))  # alone, it takes everything
        await b.tick()  # b joins: nothing is free yet
        _, shed = await a.tick()  # a sees two members and gives half up
        assert len(shed) == PARTITIONS // 2
        taken_b, _ = await b.tick()
        assert sorted(taken_b) == sorted(shed)
        assert set(a.valid_until).isdisjoint(b.valid_until)
        assert all(a.valid(p) for p in a.valid_until)
        # a stops renewing (killed): its leases run out, then b holds every partition.
        await asyncio.sleep(TTL_S + 0.2)
        assert not any(a.valid(p) for p in range(PARTITIONS))
        taken_b, _ = await b.tick()
        assert sorted(taken_b) == sorted(set(range(PARTITIONS)) - set(shed))
        assert sorted(b.valid_until) == list(range(PARTITIONS))
        await b.leave()
        assert await db.leases.holders() == []
    finally:
        await db.close()


def _event(kind: AlertEventType, alert_id: str = "M1-bypass-100") -> AlertEvent:
    alert = Alert(
        id=alert_id,
        meter="M1",
        kind=AlertKind.BYPASS,
        severity=Severity.MAJOR,
        start=100.0,
        confidence=0.9,
        summary="bypass",
    )
    return AlertEvent(type=kind, ts=200.0, alert=alert)


def test_replayed_events_the_database_holds_are_not_written_again() -> None:
    active = _event(AlertEventType.OPEN).alert
    ended = active.model_copy(update={"end": 300.0})
    assert already_stored(_event(AlertEventType.OPEN), {active.id: active})
    assert not already_stored(_event(AlertEventType.UPDATE), {active.id: active})
    assert not already_stored(_event(AlertEventType.CLEAR), {active.id: active})
    assert already_stored(_event(AlertEventType.UPDATE), {ended.id: ended})
    assert already_stored(_event(AlertEventType.CLEAR), {ended.id: ended})
    # Unknown to the database: new, whatever it is.
    for kind in AlertEventType:
        assert not already_stored(_event(kind, "M1-bypass-999"), {active.id: active})
