"""The service: sources feed the engine through a bounded queue; events go to the stores."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import uvicorn

from api.app import create_app
from collector.base import Source
from collector.factory import build_source
from detectors.engine import Engine, build_detectors
from meterguard.calendar import Calendar
from meterguard.model import AlertEvent, AlertEventType, ReadingBatch
from meterguard.notifiers import build_notifiers
from meterguard.runtime import Runtime
from meterguard.validation import ReadingValidator, wall_clock

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 30.0


def build_sources(runtime: Runtime) -> list[Source]:
    """Build one source per configured gateway, broker subscription or DLMS source."""
    return [build_source(s, runtime.registry, runtime.status) for s in runtime.settings.sources]


class Service:
    """Runs the sources, the engine pipeline and (optionally) the API until cancelled."""

    def __init__(self, runtime: Runtime, sources: Sequence[Source] | None = None) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.engine = Engine(
            runtime.registry,
            build_detectors(settings.detectors, runtime.registry),
            Calendar(settings.calendar),
        )
        self.validator = ReadingValidator(runtime.registry, settings.validation)
        self.engine.clock_report = self.validator.report
        self.sources = list(build_sources(runtime) if sources is None else sources)
        self._queue: asyncio.Queue[ReadingBatch] = asyncio.Queue(settings.engine.queue_batches)
        self._series_queue: asyncio.Queue[ReadingBatch] = asyncio.Queue(
            settings.engine.queue_batches
        )
        self.api_server: uvicorn.Server | None = None
        self._stop = asyncio.Event()
        runtime.gauges["engine_queue_batches"] = self._queue.qsize
        runtime.gauges["series_queue_batches"] = self._series_queue.qsize
        self.notifiers = build_notifiers(settings.notify)
        for notifier in self.notifiers:
            runtime.gauges[f"notify_{notifier.sender.name}_backlog"] = notifier.backlog
        runtime.manual_clear_hooks.append(self._cleared_by_hand)

    def _cleared_by_hand(self, event: AlertEvent) -> None:
        """Forget an incident an operator cleared, and tell the notifiers."""
        self.engine.forget(event.alert)
        for notifier in self.notifiers:
            notifier.offer(event)

    async def _feed(self, source: Source) -> None:
        async with source:
            async for batch in source.batches():
                await self._queue.put(batch)

    async def _detect(self) -> None:
        counters = self.runtime.counters
        while True:
            batch = await self._queue.get()
            counters.batches_in += 1
            counters.readings_in += len(batch)
            # Nothing downstream sees a value the meter cannot have shown, or a reading
            # from a clock that is wrong.
            batch = self.validator.check(batch, wall_clock())
            if len(batch) == 0:
                self._queue.task_done()
                continue
            self.runtime.latest.update(batch)
            for event in self.engine.process(batch):
                applied = await self._persist(
                    f"alert {event.alert.id}", self.runtime.alerts.apply, event
                )
                if not applied:
                    # Stale (the alert was cleared by hand meanwhile) or refused: the
                    # store keeps what it had, and the listeners hear nothing of it.
                    continue
                self.runtime.broadcaster.publish(event)
                for notifier in self.notifiers:
                    notifier.offer(event)
                counters.alert_events += 1
                if event.type is AlertEventType.OPEN:
                    counters.alerts_opened += 1
                    log.info(
                        "alert opened: %s %s - %s",
                        event.alert.meter,
                        event.alert.kind,
                        event.alert.summary,
                    )
                elif event.type is AlertEventType.CLEAR:
                    counters.alerts_cleared += 1
            # A slow series store makes this wait, never loses a batch.
            await self._series_queue.put(batch)
            self._queue.task_done()

    async def _write_series(self) -> None:
        while True:
            batch = await self._series_queue.get()
            await self._persist(f"{len(batch)} readings", self.runtime.series.write, batch)
            self._series_queue.task_done()

    async def _persist(self, what: str, write: Callable[[T], Awaitable[R]], item: T) -> R:
        """Write until the store takes it and return its answer; an error waits and retries.

        A store failure never stops the service nor drops the item: the queues behind it
        fill and slow the sources down instead.
        """
        delay = STORE_RETRY_FIRST_S
        failing = False
        while True:
            try:
                answer = await write(item)
            except Exception as exc:  # any store failure is retried the same way
                self.runtime.counters.store_errors += 1
                if not failing:
                    log.error("store refused %s (%s); retrying until it is taken", what, exc)
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)
                continue
            if failing:
                log.info("store took %s after failures", what)
            return answer

    async def restore(self) -> int:
        """Take back the alerts still open from the last run."""
        taken = self.engine.restore(await self.runtime.alerts.list(active=True, limit=100_000))
        if taken:
            log.info("resumed %d open alert(s) from the last run", taken)
        return taken

    def request_stop(self) -> None:
        """Ask a running service to stop cleanly: API first, then sources, then drain."""
        self._stop.set()

    async def _stopper(
        self, sources: list[asyncio.Task[None]], api_task: asyncio.Task[None] | None
    ) -> None:
        await self._stop.wait()
        log.info("stopping: closing the API, then the sources; draining the queues")
        if self.api_server is not None and api_task is not None:
            self.api_server.should_exit = True
            await asyncio.wait([api_task])
        for task in sources:
            task.cancel()
        if sources:
            await asyncio.wait(sources)
        # Whatever was read is still detected and stored before the stores close.
        await self._queue.join()
        await self._series_queue.join()
        raise _CleanStopError

    async def run(self, serve_api: bool | None = None) -> None:
        """Run everything until request_stop() (clean) or cancellation."""
        await self.restore()
        api = self.runtime.settings.api
        serve = api.enabled if serve_api is None else serve_api
        try:
            async with asyncio.TaskGroup() as tasks:
                sources = [
                    tasks.create_task(self._feed(source), name=f"source-{source.name}")
                    for source in self.sources
                ]
                tasks.create_task(self._detect(), name="engine")
                tasks.create_task(self._write_series(), name="series-writer")
                for notifier in self.notifiers:
                    tasks.create_task(notifier.run(), name=f"notify-{notifier.sender.name}")
                api_task = None
                if serve:
                    app = create_app(self.runtime.settings, self.runtime)
                    config = uvicorn.Config(
                        app, host=api.host, port=api.port, log_level="warning", lifespan="on"
                    )
                    self.api_server = uvicorn.Server(config)
                    api_task = tasks.create_task(self.api_server.serve(), name="api")
                tasks.create_task(self._stopper(sources, api_task), name="stopper")
        except* _CleanStopError:
            log.info("stopped cleanly")


class _CleanStopError(Exception):
    """Raised inside the task group to end it after a clean stop."""


def stop_on_signals(service: Service) -> None:
    """Make SIGINT and SIGTERM stop the service cleanly (call from its event loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.request_stop)
