"""The one alert path: persist, then publish, notify and forget; failures and their order."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meterguard.alerting import AlertService
from meterguard.broadcast import AlertBroadcaster, NumberedEvent
from meterguard.errors import AlertAlreadyClearedError, AlertNotFoundError, StoreUnavailableError
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.notifiers import Notifier
from meterguard.runtime import Counters
from meterguard.stores.alertdb import AlertDatabase, core, sqlite_url
from meterguard.stores.records import CaseState


def _alert(**changes: object) -> Alert:
    base: dict[str, object] = dict(
        id="A1",
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=100.0,
        confidence=0.9,
        summary="phase 2 reversed",
        evidence={"last_hold_ts": 160.0},
    )
    base.update(changes)
    return Alert.model_validate(base)


def _event(kind: AlertEventType, **changes: object) -> AlertEvent:
    return AlertEvent(type=kind, ts=160.0, alert=_alert(**changes))


@dataclass
class Steps:
    """What happened, in order, as each part of the path saw it."""

    log: list[str] = field(default_factory=list)


class WatchedBroadcaster(AlertBroadcaster):
    """The real broadcaster, noting each publication in the shared log."""

    def __init__(self, steps: Steps) -> None:
        super().__init__()
        self.steps = steps

    def publish(self, event: AlertEvent | CaseState) -> NumberedEvent:
        what = event.type.value if isinstance(event, AlertEvent) else "case"
        self.steps.log.append(f"publish {what}")
        return super().publish(event)


class RecordingNotifier:
    """A receiver that takes what it is offered and notes it."""

    def __init__(self, steps: Steps, name: str) -> None:
        self.steps = steps
        self.name = name
        self.events: list[AlertEvent] = []

    def offer(self, event: AlertEvent) -> None:
        self.steps.log.append(f"notify {self.name} {event.type.value}")
        self.events.append(event)


class BrokenNotifier:
    """A receiver whose queue itself is broken: every offer raises."""

    def offer(self, event: AlertEvent) -> None:
        raise RuntimeError("notifier queue is broken")


class RecordingEngine:
    """Stands for the detector engine's open incidents; notes what it is told to forget."""

    def __init__(self, steps: Steps, fail: bool = False) -> None:
        self.steps = steps
        self.fail = fail
        self.forgotten: list[str] = []

    def forget(self, alert: Alert) -> bool:
        self.steps.log.append(f"forget {alert.id}")
        if self.fail:
            raise RuntimeError("the engine lost its incident table")
        self.forgotten.append(alert.id)
        return True


@dataclass
class Wired:
    service: AlertService
    db: AlertDatabase
    broadcaster: WatchedBroadcaster
    counters: Counters
    steps: Steps


@pytest.fixture
async def path(tmp_path: Path) -> AsyncIterator[Wired]:
    """An alert service over a real SQLite alert database, with the persist step logged."""
    steps = Steps()
    db = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    real_apply, real_clear = db.alerts.apply, db.alerts.clear

    async def apply(event: AlertEvent) -> bool:
        taken = await real_apply(event)
        steps.log.append(f"persist {event.type.value} {taken}")
        return taken

    async def clear(alert_id: str, user: str, reason: str) -> Alert:
        cleared = await real_clear(alert_id, user, reason)
        steps.log.append("persist manual clear")
        return cleared

    db.alerts.apply = apply  # type: ignore[method-assign]
    db.alerts.clear = clear  # type: ignore[method-assign, assignment]
    broadcaster = WatchedBroadcaster(steps)
    counters = Counters()
    service = AlertService(db.alerts, db.cases, broadcaster, counters)
    yield Wired(service, db, broadcaster, counters, steps)
    await db.close()


def _published(broadcaster: AlertBroadcaster) -> list[AlertEvent | CaseState]:
    return [n.event for n in broadcaster.recent()]


async def test_an_engine_event_is_persisted_then_published_then_notified(path: Wired) -> None:
    first, second = RecordingNotifier(path.steps, "a"), RecordingNotifier(path.steps, "b")
    path.service.attach([first, second], RecordingEngine(path.steps))
    assert await path.service.engine_event(_event(AlertEventType.OPEN))
    assert path.steps.log == [
        "persist open True",
        "publish open",
        "notify a open",
        "notify b open",
    ]
    assert [a.id for a in await path.db.alerts.list(active=True)] == ["A1"]
    assert (path.counters.alert_events, path.counters.alerts_opened) == (1, 1)
    assert await path.service.engine_event(_event(AlertEventType.CLEAR, end=150.0))
    assert (path.counters.alert_events, path.counters.alerts_cleared) == (2, 1)
    assert [e.type for e in first.events] == [AlertEventType.OPEN, AlertEventType.CLEAR]


async def test_a_store_failure_is_raised_before_anything_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "SQLITE_POOL_WAIT_S", 0.3)
    db = AlertDatabase(sqlite_url(tmp_path / "alerts.sqlite"))
    steps = Steps()
    broadcaster = WatchedBroadcaster(steps)
    counters = Counters()
    service = AlertService(db.alerts, db.cases, broadcaster, counters)
    notifier = RecordingNotifier(steps, "a")
    service.attach([notifier], RecordingEngine(steps))
    try:
        await db.alerts.apply(_event(AlertEventType.OPEN))
        # Another part of the process holds both pooled connections: the store is unavailable.
        async with db.engine.connect(), db.engine.connect():
            with pytest.raises(StoreUnavailableError):
                await service.engine_event(_event(AlertEventType.UPDATE, summary="worse"))
            with pytest.raises(StoreUnavailableError):
                await service.clear("A1", "olga", "rewired")
            with pytest.raises(StoreUnavailableError):
                await service.acknowledge("A1", "olga")
        assert steps.log == []
        assert notifier.events == []
        assert counters == Counters()
        # Taken once the store answers again, and only then heard.
        assert await service.engine_event(_event(AlertEventType.UPDATE, summary="worse"))
        assert steps.log == ["publish update", "notify a update"]
    finally:
        await db.close()


async def test_a_stale_event_is_neither_published_nor_notified(path: Wired) -> None:
    notifier = RecordingNotifier(path.steps, "a")
    path.service.attach([notifier], RecordingEngine(path.steps))
    await path.service.engine_event(_event(AlertEventType.OPEN))
    await path.service.clear("A1", "olga", "meter replaced")
    path.steps.log.clear()
    # The engine had not heard of the clear yet: its update is stale.
    assert not await path.service.engine_event(_event(AlertEventType.UPDATE, summary="late"))
    assert path.steps.log == ["persist update False"]
    assert [e.type for e in notifier.events] == [AlertEventType.OPEN, AlertEventType.CLEAR]
    assert path.counters.alert_events == 1


async def test_a_failing_notifier_blocks_neither_the_store_the_stream_nor_the_others(
    path: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    after = RecordingNotifier(path.steps, "after")
    path.service.attach([BrokenNotifier(), after], RecordingEngine(path.steps))
    assert await path.service.engine_event(_event(AlertEventType.OPEN))
    assert path.steps.log == ["persist open True", "publish open", "notify after open"]
    assert path.counters.notify_failures == 1
    assert path.counters.alerts_opened == 1
    assert [a.id for a in await path.db.alerts.list(active=True)] == ["A1"]
    assert any("notifier refused open A1" in r.getMessage() for r in caplog.records)


async def test_a_real_notifier_queues_what_was_stored(path: Wired) -> None:
    class Unused:
        name = "unused"

        async def send(self, event: AlertEvent) -> None:
            raise AssertionError("nothing delivers in this test")

        async def close(self) -> None:
            pass

    notifier = Notifier(Unused(), queue_events=1, max_attempts=1)
    path.service.attach([notifier], RecordingEngine(path.steps))
    assert await path.service.engine_event(_event(AlertEventType.OPEN))
    assert notifier.backlog() == 1
    # A full queue drops the event (counted by the notifier); the path goes on.
    assert await path.service.engine_event(_event(AlertEventType.UPDATE, summary="worse"))
    assert (notifier.backlog(), notifier.dropped) == (1, 1)
    assert path.counters.notify_failures == 0


async def test_a_manual_clear_is_persisted_published_notified_then_forgotten(path: Wired) -> None:
    notifier = RecordingNotifier(path.steps, "a")
    engine = RecordingEngine(path.steps)
    path.service.attach([notifier], engine)
    await path.service.engine_event(_event(AlertEventType.OPEN))
    path.steps.log.clear()
    cleared = await path.service.clear("A1", "olga", "meter replaced")
    assert path.steps.log == [
        "persist manual clear",
        "publish clear",
        "notify a clear",
        "forget A1",
    ]
    assert cleared.end == 160.0
    assert engine.forgotten == ["A1"]
    (event,) = [e for e in _published(path.broadcaster) if isinstance(e, AlertEvent)][1:]
    assert (event.type, event.ts, event.alert.end) == (AlertEventType.CLEAR, 160.0, 160.0)
    assert path.counters.alerts_cleared_manually == 1
    # A second clear is refused by the store: nothing more goes out.
    path.steps.log.clear()
    with pytest.raises(AlertAlreadyClearedError):
        await path.service.clear("A1", "olga", "again")
    with pytest.raises(AlertNotFoundError):
        await path.service.clear("nope", "olga", "x")
    assert path.steps.log == []
    assert path.counters.alerts_cleared_manually == 1


async def test_an_engine_that_cannot_forget_leaves_the_clear_standing(
    path: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = RecordingNotifier(path.steps, "a")
    path.service.attach([notifier], RecordingEngine(path.steps, fail=True))
    await path.service.engine_event(_event(AlertEventType.OPEN))
    cleared = await path.service.clear("A1", "olga", "meter replaced")
    assert not cleared.active
    assert not (await path.db.alerts.get("A1")).active
    assert [e.type for e in notifier.events] == [AlertEventType.OPEN, AlertEventType.CLEAR]
    assert any("could not forget alert A1" in r.getMessage() for r in caplog.records)


async def test_without_an_engine_a_manual_clear_still_goes_out(path: Wired) -> None:
    # An API process that runs no engine: no notifiers, nothing to forget.
    await path.db.alerts.apply(_event(AlertEventType.OPEN))
    await path.service.clear("A1", "olga", "meter replaced")
    assert path.steps.log == ["persist open True", "persist manual clear", "publish clear"]


async def test_case_changes_are_persisted_then_published_and_not_notified(path: Wired) -> None:
    notifier = RecordingNotifier(path.steps, "a")
    path.service.attach([notifier], RecordingEngine(path.steps))
    await path.service.engine_event(_event(AlertEventType.OPEN))
    ack = await path.service.acknowledge("A1", "olga", "on it")
    assigned = await path.service.assign("A1", "crew-7", "olga")
    assert (ack.user, assigned.assignee) == ("olga", "crew-7")
    assert path.steps.log[-2:] == ["publish case", "publish case"]
    states = [e for e in _published(path.broadcaster) if isinstance(e, CaseState)]
    assert [(s.acknowledged_by, s.assignee) for s in states] == [
        ("olga", None),
        ("olga", "crew-7"),
    ]
    assert [e.type for e in notifier.events] == [AlertEventType.OPEN]
    with pytest.raises(AlertNotFoundError):
        await path.service.acknowledge("nope", "olga")
    assert len(path.broadcaster.recent()) == 3


async def test_listeners_hear_what_the_path_published(path: Wired) -> None:
    heard: list[NumberedEvent] = []

    async def listen() -> None:
        async for item in path.service.listen():
            assert isinstance(item, NumberedEvent)
            heard.append(item)
            if len(heard) == 2:
                return

    listener = asyncio.create_task(listen())
    while path.broadcaster.listeners == 0:
        await asyncio.sleep(0.01)
    await path.service.engine_event(_event(AlertEventType.OPEN))
    await path.service.acknowledge("A1", "olga")
    await asyncio.wait_for(listener, 5)
    assert [type(n.event) for n in heard] == [AlertEvent, CaseState]
