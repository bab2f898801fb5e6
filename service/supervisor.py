"""The service: sources feed the engine through a bounded queue; events go to the stores.

Sources are isolated from each other and from the rest: a source that raises (or whose
batches end) is reported on the status board and restarted after a jittered exponential
backoff, while the engine, the API and the other sources go on. Each batch travels with
its source's commit callback, called once the series store has committed the batch: the
MQTT source sends its acknowledgements there, so a crash loses nothing a broker accepted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import uvicorn

from api.app import create_app
from collector.base import Source, deliveries, jittered_backoff
from collector.registry import build_source, typed_sources
from detectors.engine import Engine, build_detectors
from detectors.rest_days import describe
from meterguard.calendar import Calendar
from meterguard.model import ReadingBatch
from meterguard.notifiers import build_notifiers
from meterguard.runtime import Runtime
from meterguard.validation import ReadingValidator, wall_clock
from service.leasing import LeasedSource, default_owner

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 30.0
SOURCE_RESTART_FIRST_S = 1.0
SOURCE_RESTART_MAX_S = 60.0
#: A source that ran this long before failing starts its backoff afresh.
SOURCE_HEALTHY_AFTER_S = 300.0
#: Readings held for their commit callbacks at most before the series store must commit.
COMMIT_HELD_ROWS = 20_000
#: How long a commit may wait for a store's server, and the pause before trying again.
COMMIT_WAIT_S = 5.0
COMMIT_RETRY_S = 2.0

#: A batch on its way through the pipeline, with what to call once it is stored.
_Item = tuple[ReadingBatch, Callable[[], None] | None]


def build_sources(runtime: Runtime) -> list[Source]:
    """Build one source per [[sources]] entry, by the source type its `type` names.

    Every entry is checked first (its type's settings, known meters, profiles that fit
    their meter's service), each problem with its key (`sources[i].devices[j].profile`).
    With `[leases]` on, a polled source reads only while this process holds its
    gateway's lease in the alert database (service/leasing.py).
    """
    settings = runtime.settings
    typed = typed_sources(settings, runtime.registry)
    built = [build_source(s, runtime.registry, runtime.status) for s in typed]
    leases = settings.leases
    if not leases.enabled:
        return built
    owner = leases.owner or default_owner()
    return [
        source
        if (key := entry.lease_key()) is None
        else LeasedSource(
            source,
            runtime.alert_db.leases,
            key,
            owner,
            leases.ttl_s,
            runtime.status.health(source.name),
        )
        for entry, source in zip(typed, built, strict=True)
    ]


@dataclass(slots=True)
class _Run:
    """Restart bookkeeping of one source."""

    attempt: int = 0
    #: Failures since the source last delivered a batch (0: it is healthy).
    failures: int = 0


class Service:
    """Runs the sources, the engine pipeline and (optionally) the API until cancelled."""

    def __init__(self, runtime: Runtime, sources: Sequence[Source] | None = None) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.engine = Engine(
            runtime.registry,
            build_detectors(settings.detectors, runtime.registry),
            Calendar(settings.calendar),
            tick_s=settings.engine.tick_s,
        )
        runtime.silent_detectors = self.engine.silent_reasons
        self.validator = ReadingValidator(runtime.registry, settings.validation)
        # The API reads what the checks counted from the runtime.
        self.validator.report = runtime.validation
        self.engine.clock_report = runtime.validation
        self.sources = list(build_sources(runtime) if sources is None else sources)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(settings.engine.queue_batches)
        self._series_queue: asyncio.Queue[_Item] = asyncio.Queue(settings.engine.queue_batches)
        self.api_server: uvicorn.Server | None = None
        self._stop = asyncio.Event()
        #: Set once a stop has drained the queues: the sources may close their connections.
        self._drained = asyncio.Event()
        #: Sources moving batches into the queue; a stop waits until none is.
        self._pumping: set[str] = set()
        self._pumps_idle = asyncio.Event()
        self._rng = np.random.default_rng()
        #: Commit callbacks of written batches waiting for the series store's commit.
        self._held: list[tuple[int, Callable[[], None]]] = []
        self._held_rows = 0
        self._commit_retry_at = 0.0
        self._commit_failing = False
        #: Batches the engine raised on (logged; the readings are still stored).
        self.engine_failures = 0
        #: Batches done with: validated, judged, their alert events stored and published,
        #: their readings written to the series store. Every batch taken counts, in the
        #: order it came, empty ones and those the engine failed on too.
        self.batches_done = 0
        self._batch_done = asyncio.Condition()
        runtime.gauges["engine_queue_batches"] = self._queue.qsize
        runtime.gauges["series_queue_batches"] = self._series_queue.qsize
        runtime.gauges["engine_failed_batches"] = lambda: self.engine_failures
        self.notifiers = build_notifiers(settings.notify)
        for notifier in self.notifiers:
            runtime.gauges[f"notify_{notifier.sender.name}_backlog"] = notifier.backlog
        # Alert events and manual clears reach the notifiers and the engine by one path.
        runtime.alerting.attach(self.notifiers, self.engine)

    async def _feed(self, source: Source) -> None:
        """Run one source until the service stops, restarting it whenever it fails."""
        health = self.runtime.status.health(source.name)
        run = _Run()
        while not self._stop.is_set():
            started = time.monotonic()
            error: BaseException | None = None
            try:
                async with source:
                    health.running, health.failed = True, False
                    if await self._pump(source, run):
                        # Stopping: the connection stays open until every batch taken is
                        # stored, so its acknowledgements can still go out.
                        await self._drained.wait()
                        break
            except Exception as exc:  # whatever a source raises stops that source only
                error = exc
            if self._stop.is_set():
                break
            if time.monotonic() - started > SOURCE_HEALTHY_AFTER_S:
                run.attempt = 0
            delay = jittered_backoff(
                run.attempt, SOURCE_RESTART_FIRST_S, SOURCE_RESTART_MAX_S, self._rng
            )
            run.attempt += 1
            run.failures += 1
            reason = "its batches ended" if error is None else f"{type(error).__name__}: {error}"
            health.failure(reason)
            if run.failures == 1:  # the first failure of a spell; the board shows the rest
                log.error(
                    "source %s failed (%s); restarting it with backoff, the others go on",
                    source.name,
                    reason,
                    exc_info=error,
                )
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except TimeoutError:
                health.restarts += 1
        health.running = False
        health.stopped = True

    async def _pump(self, source: Source, run: _Run) -> bool:
        """Move a source's batches into the queue until a stop (True) or their end (False).

        A failing source raises out of here; a stop cancels the move between batches.
        """
        if self._stop.is_set():
            return True
        self._pumping.add(source.name)
        self._pumps_idle.clear()
        stop = asyncio.ensure_future(self._stop.wait())
        move = asyncio.ensure_future(self._move(source, run))
        try:
            await asyncio.wait({stop, move}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not move.done():
                move.cancel()
                await asyncio.wait({move})
            self._pumping.discard(source.name)
            if not self._pumping:
                self._pumps_idle.set()
        if move.cancelled():
            return True
        move.result()  # the source's own exception, if it raised
        return self._stop.is_set()

    async def _move(self, source: Source, run: _Run) -> None:
        health = self.runtime.status.health(source.name)
        async for delivery in deliveries(source):
            if run.failures:
                log.info("source %s delivers again after %d failure(s)", source.name, run.failures)
                run.failures = 0
                health.failed = False
            await self._queue.put((delivery.batch, delivery.on_committed))

    async def _detect(self) -> None:
        counters = self.runtime.counters
        while True:
            batch, on_committed = await self._queue.get()
            if len(batch):
                counters.batches_in += 1
                counters.readings_in += len(batch)
                try:
                    batch = await self._judge(batch)
                except Exception:  # a detector's failure must not stop detection for all
                    self.engine_failures += 1
                    log.exception("the engine failed on a batch of %d readings", len(batch))
            # A slow series store makes this wait, never loses a batch. Empty batches go
            # too: their commit keeps the acknowledgements in the order of arrival.
            await self._series_queue.put((batch, on_committed))
            self._queue.task_done()

    async def _judge(self, batch: ReadingBatch) -> ReadingBatch:
        """Validate a batch, run the detectors on it, persist and announce the events."""
        # Nothing downstream sees a value the meter cannot have shown, or a reading
        # from a clock that is wrong.
        batch = self.validator.check(batch, wall_clock())
        if len(batch) == 0:
            return batch
        self.runtime.engine_activity.took(float(batch.ts.max()), time.time())
        self.runtime.latest.update(batch)
        for event in self.engine.process(batch):
            # The alert service stores the event before anything hears of it; a store
            # failure raises before that and the event is written again until taken.
            await self._persist(
                f"alert {event.alert.id}", self.runtime.alerting.engine_event, event
            )
        watch = self.engine.rest_days
        found = watch.newly_found()
        self.runtime.engine_activity.rest_days_found.extend(found)
        for rested, taken in ((found, True), (watch.newly_rested(self.engine.now), False)):
            if rested:
                dates = ", ".join(day.isoformat() for day in rested)
                log.warning(
                    "%s; if they are holidays, add them to [calendar] extra_holidays (%s)",
                    describe(rested, taken=taken),
                    dates,
                )
        return batch

    async def _write_series(self) -> None:
        """Write batches to the series store; their commit callbacks wait for its commit.

        The store groups writes into transactions of its own. A batch with a commit
        callback (an MQTT broker waiting for its acknowledgement) is held until the store
        has committed it: when nothing more waits in the queue, or once COMMIT_HELD_ROWS
        readings are held, the store is told to commit and the callbacks run in the order
        the batches came. Batches without callbacks never force a commit, and a store that
        cannot commit now (a server down) holds the callbacks, not the pipeline.
        """
        while True:
            timeout = COMMIT_RETRY_S if self._held else None
            try:
                batch, on_committed = await asyncio.wait_for(self._series_queue.get(), timeout)
            except TimeoutError:
                await self._commit_held()
                continue
            try:
                if len(batch):
                    await self._persist(f"{len(batch)} readings", self.runtime.series.write, batch)
                if on_committed is not None:
                    self._held.append((len(batch), on_committed))
                    self._held_rows += len(batch)
                if self._held and (
                    self._series_queue.empty() or self._held_rows >= COMMIT_HELD_ROWS
                ):
                    await self._commit_held()
                self.batches_done += 1
                async with self._batch_done:
                    self._batch_done.notify_all()
            finally:
                self._series_queue.task_done()

    async def _commit_held(self) -> None:
        """Commit the series store and run the held callbacks; retry later if it cannot."""
        if not self._held or time.monotonic() < self._commit_retry_at:
            return
        try:
            committed = await _commit(self.runtime.series)
        except Exception as exc:  # the store keeps what it could not commit; retried
            self.runtime.counters.store_errors += 1
            if not self._commit_failing:
                log.error("series store cannot commit (%s); acknowledgements wait", exc)
            committed = False
        if not committed:
            self._commit_failing = True
            self._commit_retry_at = time.monotonic() + COMMIT_RETRY_S
            return
        if self._commit_failing:
            log.info("series store commits again; %d batches acknowledged", len(self._held))
            self._commit_failing = False
        held, self._held, self._held_rows = self._held, [], 0
        for rows, callback in held:
            try:
                callback()
            except Exception:  # unacknowledged input comes again: at least once
                log.exception("acknowledging %d stored readings failed", rows)

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

    async def wait_batches_done(self, count: int) -> None:
        """Wait until `count` batches in all are done with (batches_done)."""
        async with self._batch_done:
            await self._batch_done.wait_for(lambda: self.batches_done >= count)

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
        # The sources take no more batches; their connections stay open meanwhile.
        if self._pumping:
            await self._pumps_idle.wait()
        # Whatever was read is still detected, stored and acknowledged before the
        # sources close and the stores close.
        await self._queue.join()
        await self._series_queue.join()
        self._commit_retry_at = 0.0
        await self._commit_held()  # what it cannot commit now comes again from the broker
        self._drained.set()
        if sources:
            _, late = await asyncio.wait(sources, timeout=30)
            for task in late:
                task.cancel()
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


async def _commit(series: object) -> bool:
    """Make what a series store has accepted durable; True once it is.

    The embedded store commits its pending transaction; InfluxDB's store sends its
    buffer and says whether the server took it within COMMIT_WAIT_S. A store with
    neither writes through in write().
    """
    commit = getattr(series, "commit", None)
    if commit is not None:
        await commit()
        return True
    flush = getattr(series, "flush", None)
    if flush is not None:
        return bool(await flush(COMMIT_WAIT_S))
    return True


class _CleanStopError(Exception):
    """Raised inside the task group to end it after a clean stop."""


def stop_on_signals(service: Service) -> None:
    """Make SIGINT and SIGTERM stop the service cleanly (call from its event loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.request_stop)
