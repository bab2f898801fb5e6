"""One partition owned by a worker: its readings in order, its own engine, its alert events.

On taking a partition the worker replays the stream's retained window of it from the
first message, so the detectors' state is rebuilt from the same readings in the same
order as the previous owner saw them and produces the same alert events. Events the alert
database already holds (what the previous owner wrote) are not written or announced
again: an open of a stored alert, an update or clear of one that has ended. Alerts that
started before the retained window and are still active are handed to the engine first,
as the single process does at start-up, so that it goes on with them instead of opening
new ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from detectors.engine import Engine, build_detectors
from meterguard.alerting import AlertService
from meterguard.batch_codec import BatchCodecError, decode_batch
from meterguard.calendar import Calendar
from meterguard.errors import AlertNotFoundError, MeterguardError
from meterguard.model import Alert, AlertEvent, AlertEventType, ReadingBatch
from meterguard.partitioning import PartitionFleet
from meterguard.settings import Settings
from meterguard.stores.alertdb.alerts import SqlAlertRepository
from service.scale.snapshots import SnapshotError, SnapshotStore, decode_snapshot, encode_snapshot
from service.scale.stream import last_sequence, subject

log = logging.getLogger(__name__)

#: Messages fetched at most at a time.
FETCH_MESSAGES = 64
FETCH_WAIT_S = 1.0
#: A consumer of a worker that died is removed by the server after this long unused.
CONSUMER_IDLE_S = 60.0
STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 10.0


class LeaseExpiredError(MeterguardError):
    """The worker's lease on the partition may have run out: it stops before another starts."""


@dataclass(slots=True)
class PartitionProgress:
    """How far a partition's owner has come, for the worker's status lines."""

    partition: int
    #: Stream sequence of the last message judged (0: none yet).
    seq: int = 0
    readings: int = 0
    #: Stream sequence that was the newest when the partition was taken (0: it was empty).
    catch_up_to: int = 0
    #: Stream sequence of the snapshot the partition was taken from (0: replayed whole).
    started_from: int = 0
    caught_up: bool = False
    #: Wall clock (epoch s) when the partition was taken, and when it had caught up.
    taken_at: float = field(default_factory=time.time)
    caught_up_at: float | None = None
    #: Whether the worker has told of the catch-up yet.
    announced: bool = False
    counters: Counter[str] = field(default_factory=Counter)


def already_stored(event: AlertEvent, stored: dict[str, Alert]) -> bool:
    """Tell whether the previous owner already wrote what the event says."""
    held = stored.get(event.alert.id)
    if held is None:
        return False
    if event.type is AlertEventType.OPEN:
        return True
    return held.end is not None  # an update or clear of an alert that has ended


class PartitionRunner:
    """Consumes one partition from the first retained message on and judges it."""

    def __init__(
        self,
        fleet: PartitionFleet,
        settings: Settings,
        js: JetStreamContext,
        alerts: SqlAlertRepository,
        alerting: AlertService,
        fleet_digest: bytes,
        fleet_size: int,
        lease_valid: Callable[[], bool],
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.fleet = fleet
        self.partition = fleet.partition
        self.settings = settings
        self.js = js
        self.alerts = alerts
        self.alerting = alerting
        self.digest = fleet_digest
        self.fleet_size = fleet_size
        self.lease_valid = lease_valid
        self.snapshots = snapshots
        self.progress = PartitionProgress(self.partition)
        self.engine = Engine(
            fleet.registry,
            build_detectors(settings.detectors, fleet.registry),
            Calendar(settings.calendar),
        )
        #: The partition's alerts the database held when it was taken, by id.
        self._stored: dict[str, Alert] = {}
        self._restored = False
        #: Data time of the snapshot the engine was loaded from (None: a fresh engine).
        self._snapshot_time: float | None = None
        self._snapshot_at = time.monotonic()

    async def run(self) -> None:
        """Load the snapshot or replay the window, then follow the partition until cancelled."""
        scale = self.settings.scale
        progress = self.progress
        start = await self._load_snapshot()
        progress.seq = progress.started_from = start
        progress.catch_up_to = await last_sequence(self.js, scale, self.partition)
        self._mark_caught_up_if(progress.catch_up_to <= start)
        where = (
            {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start + 1}
            if start
            else {"deliver_policy": DeliverPolicy.ALL}
        )
        sub = await self.js.pull_subscribe(
            subject(scale, self.partition),
            stream=scale.stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, inactive_threshold=CONSUMER_IDLE_S, **where
            ),
        )
        try:
            while True:
                try:
                    msgs = await sub.fetch(FETCH_MESSAGES, timeout=FETCH_WAIT_S)
                except (TimeoutError, NatsTimeoutError):
                    # Nothing more: what was to catch up on has aged out of the stream.
                    self._mark_caught_up_if(True)
                    continue
                if not msgs:
                    continue
                # Message by message: each is a batch as the ingest cut it, and the engine
                # is judged on the same batches as one process would be (its events can
                # differ at a tick's edge when rows of two ticks come in one batch).
                for msg in msgs:
                    batch = self._decode(msg.data)
                    if batch is not None:
                        await self._judge(batch)
                progress.seq = int(msgs[-1].metadata.sequence.stream)
                self._mark_caught_up_if(progress.seq >= progress.catch_up_to)
                await self._maybe_snapshot()
                # The detectors ran without a pause: let the lease keeper and the other
                # partitions have the loop before the next fetch.
                await asyncio.sleep(0)
        finally:
            await sub.unsubscribe()

    async def _load_snapshot(self) -> int:
        """Take the engine from the partition's snapshot; return its sequence (0: none)."""
        if self.snapshots is None:
            return 0
        scale = self.settings.scale
        data = await self.snapshots.load(self.partition)
        if data is None:
            return 0
        try:
            snapshot = decode_snapshot(data, self.digest, scale.partitions)
        except SnapshotError as exc:
            self.progress.counters["snapshots_refused"] += 1
            log.warning("partition %d: snapshot ignored, replaying: %s", self.partition, exc)
            return 0
        self.engine = snapshot.engine
        self._snapshot_time = self.engine.now
        return snapshot.seq

    async def _maybe_snapshot(self) -> None:
        """Write the engine's state when it is due, caught up, and the lease is held."""
        every = self.settings.scale.snapshot_every_s
        if self.snapshots is None or not every or not self.progress.caught_up:
            return
        if time.monotonic() - self._snapshot_at < every or not self.lease_valid():
            return
        self._snapshot_at = time.monotonic()
        data = encode_snapshot(
            self.engine, self.progress.seq, self.digest, self.settings.scale.partitions
        )
        try:
            await self.snapshots.save(self.partition, data)
        except Exception as exc:  # the next one may succeed; the stream still has it all
            self.progress.counters["snapshot_failures"] += 1
            log.warning("partition %d: writing the snapshot failed: %s", self.partition, exc)
            return
        self.progress.counters["snapshots"] += 1

    def _mark_caught_up_if(self, done: bool) -> None:
        progress = self.progress
        if done and not progress.caught_up:
            progress.caught_up = True
            progress.caught_up_at = time.time()
            # From here on every event is new: the previous owner never got this far.
            self._stored.clear()

    def _decode(self, data: bytes) -> ReadingBatch | None:
        try:
            batch = decode_batch(data, self.digest, self.fleet_size)
        except BatchCodecError as exc:
            self.progress.counters["bad_messages"] += 1
            log.warning("partition %d: message refused: %s", self.partition, exc)
            return None
        return self.fleet.localise(batch)

    async def _judge(self, batch: ReadingBatch) -> None:
        if len(batch) == 0:
            return
        if not self._restored:
            await self._take_over(float(batch.ts.min()))
        events = self.engine.process(batch)
        self.progress.readings += len(batch)
        for event in events:
            if already_stored(event, self._stored):
                self.progress.counters["events_already_stored"] += 1
                continue
            await self._write(event)

    async def _take_over(self, window_start: float) -> None:
        """Read what the database holds of the partition from the window's start on.

        Active alerts that began before the window go back to the engine; the others,
        while catching up, are what the replay must not write again.
        """
        self._restored = True
        members = {m.id for m in self.fleet.registry}
        # After a snapshot, the previous owner's writes since its data time are what the
        # replay of the messages that followed must not repeat.
        since = window_start if self._snapshot_time is None else self._snapshot_time
        stored = [a for a in await self.alerts.since(since) if a.meter in members]
        if not self.progress.caught_up:
            self._stored = {a.id: a for a in stored}
        if self._snapshot_time is not None:
            return  # the snapshot's engine holds its open incidents already
        older = [a for a in stored if a.end is None and a.start < window_start]
        if older:
            taken = self.engine.restore(older)
            log.info("partition %d: %d active alerts older than the window", self.partition, taken)

    async def _write(self, event: AlertEvent) -> None:
        """Persist and announce an event, retrying while the store fails and the lease holds."""
        delay = STORE_RETRY_FIRST_S
        while True:
            if not self.lease_valid():
                raise LeaseExpiredError(f"partition {self.partition}: lease may have expired")
            try:
                taken = await self.alerting.engine_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.progress.counters["store_errors"] += 1
                log.warning("partition %d: storing an alert event failed: %s", self.partition, exc)
                await asyncio.sleep(delay)
                delay = min(STORE_RETRY_MAX_S, delay * 2)
                continue
            if not taken and event.type is AlertEventType.UPDATE:
                await self._forget_if_cleared(event.alert)
            return

    async def _forget_if_cleared(self, alert: Alert) -> None:
        """Drop an incident whose alert an operator cleared by hand in another process.

        The API that cleared it runs apart from this engine, so the engine learns of it
        when the store calls its next update stale; a condition that still holds then
        starts a new incident (one process does so at the clear itself).
        """
        try:
            held = await self.alerts.get(alert.id)
        except AlertNotFoundError:
            return  # its open was refused (a second active alert): nothing to forget
        if held.end is not None and self.engine.forget(held):
            self.progress.counters["cleared_by_hand"] += 1
            log.info("partition %d: %s cleared by hand; incident dropped", self.partition, held.id)
