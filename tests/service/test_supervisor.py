"""The service pipeline: store failures are retried, a clean stop drains the queues."""

import asyncio
import datetime as dt
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from api.app import create_app
from collector.base import Delivery
from meterguard.model import AlertEvent, Meter, ReadingBatch
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.stores.repositories import AlertRepository
from service.supervisor import Service
from tests.conftest import make_batch


class ListSource:
    """Yields prepared batches once, then waits like a live source between polls."""

    name = "list"

    def __init__(self, batches: list[ReadingBatch]) -> None:
        self._batches = batches

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        for batch in self._batches:
            yield batch
        await asyncio.Event().wait()


def _failing_first(
    times: int, apply: Callable[[AlertEvent], Awaitable[bool]]
) -> Callable[[AlertEvent], Coroutine[Any, Any, bool]]:
    """Wrap a real store method so that its first calls fail as a lost database would."""
    state = {"left": times}

    async def wrapped(event: AlertEvent) -> bool:
        if state["left"]:
            state["left"] -= 1
            raise ConnectionError("database unreachable")
        return await apply(event)

    return wrapped


def _one_meter(tmp_path: Path) -> Settings:
    """Settings of a one-meter fleet stored in `tmp_path`, without the API."""
    return Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(enabled=False),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )


async def _until(predicate: Callable[[], bool], within_s: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_store_failures_are_retried_and_a_clean_stop_drains(tmp_path: Path) -> None:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(enabled=False),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
        detectors={"reversal": {"raise_after_s": 0}},
    )
    runtime = Runtime.open(settings)
    store: AlertRepository = runtime.alerts
    runtime.alerts.apply = _failing_first(2, store.apply)  # type: ignore[method-assign, assignment]
    rows = [
        (1_767_225_600.0 + 60 * k, 0, {"v1": 230.0, "p1": 500.0, "p2": -800.0, "p3": 400.0})
        for k in range(50)
    ]
    service = Service(runtime, sources=[ListSource([make_batch(rows[:25]), make_batch(rows[25:])])])
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.wait_batches_done(2), 30)
        service.request_stop()
        await asyncio.wait_for(task, 30)
        alerts = await runtime.alerts.list()
        stored = await runtime.series.query("M1", 0, 2e9, ["p2"])
    finally:
        task.cancel()
        await runtime.close()
    assert runtime.counters.store_errors == 2
    assert [a.meter for a in alerts] == ["M1"]
    assert alerts[0].start == rows[0][0]
    # Every reading reached the series store before the stores closed.
    assert len(stored.ts) == 50


class QueueSource(ListSource):
    """Yields the batches a test puts, when it puts them."""

    name = "queue"

    def __init__(self) -> None:
        super().__init__([])
        self.queue: asyncio.Queue[ReadingBatch] = asyncio.Queue()

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        while True:
            yield await self.queue.get()


async def test_a_manual_clear_makes_the_engine_raise_a_new_alert(tmp_path: Path) -> None:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(enabled=False, anonymous_role=None),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
        detectors={"reversal": {"raise_after_s": 300, "update_every_s": 60}},
    )
    runtime = Runtime.open(settings)
    _, token = await runtime.users.create_user("olga", "operator")
    real_apply = runtime.alerts.apply

    async def slow_apply(event: AlertEvent) -> bool:
        # A slow alert store: the test must wait until a batch is done, not until it came.
        await asyncio.sleep(0.05)
        return await real_apply(event)

    runtime.alerts.apply = slow_apply  # type: ignore[method-assign]
    source = QueueSource()
    service = Service(runtime, sources=[source])
    task = asyncio.create_task(service.run())
    t0 = 1_767_225_600.0
    reversed_p2 = {"v1": 230.0, "p1": 500.0, "p2": -800.0, "p3": 400.0}
    fed = 0

    async def feed(first: int, count: int) -> None:
        nonlocal fed
        await source.queue.put(
            make_batch([(t0 + 60 * k, 0, reversed_p2) for k in range(first, first + count)])
        )
        fed += 1
        await asyncio.wait_for(service.wait_batches_done(fed), 30)

    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await feed(0, 10)
            (first,) = await runtime.alerts.list(active=True)
            cleared = await client.post(
                f"/api/alerts/{first.id}/clear",
                json={"reason": "CT rewired on site"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert cleared.status_code == 200
            assert cleared.json()["active"] is False
            published = len(runtime.broadcaster.recent())
            # The reversal goes on: 4 more minutes are under raise_after_s, so nothing opens.
            await feed(10, 4)
            assert await runtime.alerts.list(active=True) == []
            # The engine forgot the old incident: no update of the cleared alert reached
            # the stream, and after 5 minutes of holding a new alert opens.
            await feed(14, 3)
            (second,) = await runtime.alerts.list(active=True)
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)
        await runtime.close()
    assert second.id != first.id
    assert second.start == t0 + 60 * 10
    after_clear = [n.event for n in runtime.broadcaster.recent()[published - 1 :]]
    seen = [(e.type.value, e.alert.id) for e in after_clear if isinstance(e, AlertEvent)]
    assert [e for e in seen if e[1] == first.id] == [("clear", first.id)]
    assert next(e for e in seen if e[1] != first.id) == ("open", second.id)
    assert runtime.counters.alerts_cleared_manually == 1


class CommittingQueueSource(ListSource):
    """Delivers what a test puts, each batch with a commit callback that records its tag."""

    name = "committing"

    def __init__(self) -> None:
        super().__init__([])
        self.tagged: asyncio.Queue[tuple[str, ReadingBatch]] = asyncio.Queue()
        self.acked: list[str] = []

    async def deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            tag, batch = await self.tagged.get()
            yield Delivery(batch, functools.partial(self.acked.append, tag))


async def test_commit_callbacks_run_in_order_once_the_series_store_has_committed(
    tmp_path: Path,
) -> None:
    runtime = Runtime.open(_one_meter(tmp_path))
    store = runtime.series
    log: list[str] = []
    source = CommittingQueueSource()
    plain = QueueSource()
    real_write, real_commit = store.write, store.commit  # type: ignore[attr-defined]

    async def write(batch: ReadingBatch) -> None:
        log.append(f"write {len(batch)}")
        await real_write(batch)

    async def commit() -> None:
        log.append(f"commit, acked so far {len(source.acked)}")
        await real_commit()

    store.write = write  # type: ignore[method-assign]
    store.commit = commit  # type: ignore[attr-defined]
    service = Service(runtime, sources=[source, plain])
    task = asyncio.create_task(service.run())
    t0 = time.time() - 3600
    try:
        for n, tag in enumerate(["a", "b", "empty", "c"]):
            rows = [] if tag == "empty" else [(t0 + n, 0, {"v1": 230.0})]
            await source.tagged.put((tag, make_batch(rows)))
        await _until(lambda: len(source.acked) == 4)
        # Every acknowledgement came after a commit that followed its batch's write.
        assert source.acked == ["a", "b", "empty", "c"]
        assert log[-1].startswith("commit")
        assert log.count("write 1") == 3
        # Nothing acknowledged before the first commit.
        assert next(e for e in log if e.startswith("commit")) == "commit, acked so far 0"
        # Without callbacks (a Modbus source) the store commits on its own schedule.
        commits = sum(e.startswith("commit") for e in log)
        await plain.queue.put(make_batch([(t0 + 9, 0, {"v1": 230.0})]))
        await asyncio.wait_for(service.wait_batches_done(5), 30)
        assert sum(e.startswith("commit") for e in log) == commits
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)
        stored = await runtime.series.query("M1", 0, 2e9, ["v1"])
        await runtime.close()
    assert len(stored.ts) == 4


async def test_an_engine_failure_loses_one_batch_s_detection_and_stops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = Runtime.open(_one_meter(tmp_path))
    source = QueueSource()
    service = Service(runtime, sources=[source])
    real = service.engine.process
    calls = {"n": 0}

    def process(batch: ReadingBatch) -> list[AlertEvent]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("a detector divided by zero")
        return real(batch)

    service.engine.process = process  # type: ignore[method-assign]
    task = asyncio.create_task(service.run())
    t0 = time.time() - 3600
    try:
        for k in range(3):
            await source.queue.put(make_batch([(t0 + 60 * k, 0, {"v1": 230.0})]))
        await asyncio.wait_for(service.wait_batches_done(3), 30)
        assert calls["n"] == 3
        assert runtime.gauges["engine_failed_batches"]() == 1
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 30)
        stored = await runtime.series.query("M1", 0, 2e9, ["v1"])
        await runtime.close()
    assert len(stored.ts) == 3  # the readings of the failed batch are stored all the same
    assert any("engine failed on a batch" in r.getMessage() for r in caplog.records)


class SwallowingSource(ListSource):
    """Yields a batch every 50 ms and swallows the first cancel that should stop it.

    Python 3.11's asyncio.wait_for, which pymodbus awaits each answer with, returns the
    answer and drops the cancel when the two come together.
    """

    name = "swallowing"

    def __init__(self) -> None:
        super().__init__([])
        self.swallowed = 0

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        step = 0
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1
            step += 1
            yield make_batch([(1_700_000_000.0 + step, 0, {"p1": 100.0})])


async def test_a_source_that_swallows_its_cancel_still_lets_the_service_stop(
    tmp_path: Path,
) -> None:
    runtime = Runtime.open(_one_meter(tmp_path))
    source = SwallowingSource()
    try:
        service = Service(runtime, [source])
        task = asyncio.create_task(service.run())
        await _until(lambda: runtime.counters.readings_in >= 3)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            # Free what is stuck, so that the failure is reported rather than hanging.
            for other in asyncio.all_tasks():
                if other is not asyncio.current_task():
                    other.cancel()
            await asyncio.wait({task}, timeout=10)
        assert done, "the service did not stop: its source swallowed the cancel"
        assert source.swallowed == 1
    finally:
        await runtime.close()


async def test_the_service_logs_once_a_working_day_its_customers_rested_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Five shops and five homes, a quarter-hour apart for eleven days from a Monday; on the
    # second Wednesday, a holiday the (unset) calendar does not know, the shops draw what
    # they draw on a Sunday.
    monday = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()
    holiday = dt.date(2026, 3, 11)
    meters = [
        Meter(id=f"{kind[0].upper()}{i}", service="3p4w", nominal_v=230, customer_class=kind)
        for kind in ("shop", "home")
        for i in range(5)
    ]
    days = []
    for d in range(11):
        rows = []
        for q in range(96):
            t = monday + d * 86_400 + q * 900
            day = dt.datetime.fromtimestamp(t, dt.UTC).date()
            shop_w = 200.0 if day.weekday() == 6 or day == holiday else 1000.0
            for slot, meter in enumerate(meters):
                p1 = shop_w if meter.customer_class == "shop" else 500.0
                rows.append((t, slot, {"v1": 230.0, "v2": 230.0, "v3": 230.0, "p1": p1}))
        days.append(make_batch(rows))
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path), api=ApiSettings(enabled=False), meters=meters
    )
    runtime = Runtime.open(settings)
    service = Service(runtime, sources=[ListSource(days)])
    task = asyncio.create_task(service.run())
    try:
        with caplog.at_level("WARNING", logger="service.supervisor"):
            await asyncio.wait_for(service.wait_batches_done(len(days)), 60)
        service.request_stop()
        await asyncio.wait_for(task, 30)
    finally:
        task.cancel()
        await runtime.close()
    told = [r.getMessage() for r in caplog.records if "rested as on a Sunday" in r.getMessage()]
    # Named once, though every later batch looks again (the Sunday before showed the shops'
    # day of rest).
    assert len(told) == 1, told
    assert "2026-03-11 (Wednesday)" in told[0]
    assert "judged as a day of rest once it was over" in told[0]
    assert "extra_holidays" in told[0]
    assert service.engine.calendar.found == [holiday]
    # ... and the health summary can tell it (GET /api/health, engine.rest_days_found).
    assert runtime.engine_activity.rest_days_found == [holiday]
