"""The service pipeline: store failures are retried, a clean stop drains the queues."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from api.app import create_app
from meterguard.model import AlertEvent, Meter, ReadingBatch
from meterguard.runtime import Runtime
from meterguard.service import Service
from meterguard.settings import ApiSettings, Settings, StorageSettings
from meterguard.stores import AlertStore
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
    store: AlertStore = runtime.alerts
    runtime.alerts.apply = _failing_first(2, store.apply)  # type: ignore[method-assign, assignment]
    rows = [
        (1_767_225_600.0 + 60 * k, 0, {"v1": 230.0, "p1": 500.0, "p2": -800.0, "p3": 400.0})
        for k in range(50)
    ]
    service = Service(runtime, sources=[ListSource([make_batch(rows[:25]), make_batch(rows[25:])])])
    task = asyncio.create_task(service.run())
    try:
        await _until(lambda: runtime.counters.readings_in == 50)
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
    _, token = await runtime.alerts.create_user("olga", "operator")
    source = QueueSource()
    service = Service(runtime, sources=[source])
    task = asyncio.create_task(service.run())
    t0 = 1_767_225_600.0
    reversed_p2 = {"v1": 230.0, "p1": 500.0, "p2": -800.0, "p3": 400.0}

    async def feed(first: int, count: int) -> None:
        await source.queue.put(
            make_batch([(t0 + 60 * k, 0, reversed_p2) for k in range(first, first + count)])
        )
        await _until(lambda: runtime.counters.readings_in == first + count)

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
            published = len(runtime.broadcaster._ring)
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
    after_clear = [n.event for n in list(runtime.broadcaster._ring)[published - 1 :]]
    seen = [(e.type.value, e.alert.id) for e in after_clear if isinstance(e, AlertEvent)]
    assert [e for e in seen if e[1] == first.id] == [("clear", first.id)]
    assert next(e for e in seen if e[1] != first.id) == ("open", second.id)
    assert runtime.counters.alerts_cleared_manually == 1
