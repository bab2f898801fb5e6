"""The service pipeline: store failures are retried, a clean stop drains the queues."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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
    times: int, apply: Callable[[AlertEvent], Awaitable[None]]
) -> Callable[[AlertEvent], Coroutine[Any, Any, None]]:
    """Wrap a real store method so that its first calls fail as a lost database would."""
    state = {"left": times}

    async def wrapped(event: AlertEvent) -> None:
        if state["left"]:
            state["left"] -= 1
            raise ConnectionError("database unreachable")
        await apply(event)

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
