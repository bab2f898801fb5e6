"""A detector worker: owns a share of the partitions and runs an engine for each.

Every third of the lease time it renews its leases (service/scale/ownership.py), starts a
PartitionRunner for each partition it took and stops those it lost or gave up. It writes
one JSON line per event to `out` (taken, caught_up, given_up, status), which an operator's
log collector and the scale-out benchmark read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, TextIO

from nats.js import JetStreamContext

from meterguard.alerting import AlertService
from meterguard.broadcast import AlertBroadcaster
from meterguard.model import Alert, MeterRegistry
from meterguard.notifiers import build_notifiers
from meterguard.partitioning import Partitioner, fleet_digest
from meterguard.runtime import Counters
from meterguard.settings import Settings
from meterguard.stores.alertdb import AlertDatabase
from service.scale.ownership import Ownership
from service.scale.partition import PartitionRunner
from service.scale.snapshots import SnapshotStore

log = logging.getLogger(__name__)

#: Seconds between the worker's status lines.
STATUS_EVERY_S = 1.0


def peak_rss_mb() -> float | None:
    """Return this process's peak resident memory in MB (None where /proc has none)."""
    # Not getrusage: its maximum survives exec, so it would report the parent's.
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def default_worker_name() -> str:
    """Name this worker in the leases: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Holds partition leases and runs a PartitionRunner per partition held."""

    def __init__(
        self,
        settings: Settings,
        registry: MeterRegistry,
        alert_db: AlertDatabase,
        js: JetStreamContext,
        out: TextIO | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        scale = settings.scale
        self.settings = settings
        self.registry = registry
        self.alert_db = alert_db
        self.js = js
        self.out = out
        self.snapshots = snapshots
        self.name = scale.worker or default_worker_name()
        self.partitioner = Partitioner(registry, scale.partitions)
        self.digest = fleet_digest(registry)
        self.ownership = Ownership(
            alert_db.leases, scale.stream, scale.partitions, self.name, scale.lease_ttl_s
        )
        self.counters = Counters()
        self.alerting = AlertService(
            alert_db.alerts, alert_db.cases, AlertBroadcaster(), self.counters
        )
        self.notifiers = build_notifiers(settings.notify)
        self.alerting.attach(self.notifiers, self)
        self.runners: dict[int, tuple[PartitionRunner, asyncio.Task[None]]] = {}
        self._started = time.monotonic()

    def forget(self, alert: Alert) -> bool:
        """Have the engine of the alert's partition drop its incident (a manual clear)."""
        if alert.meter not in self.registry:
            return False
        partition = int(self.partitioner.of_slot[self.registry.slot(alert.meter)])
        entry = self.runners.get(partition)
        return entry is not None and entry[0].engine.forget(alert)

    def _emit(self, event: str, **fields: Any) -> None:
        if self.out is None:
            return
        record = {"event": event, "worker": self.name, "t": time.time(), **fields}
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()

    def _start(self, partition: int) -> None:
        runner = PartitionRunner(
            self.partitioner.fleet(partition),
            self.settings,
            self.js,
            self.alert_db.alerts,
            self.alerting,
            self.digest,
            len(self.registry),
            lambda: self.ownership.valid(partition),
            self.snapshots,
        )
        task = asyncio.create_task(runner.run(), name=f"partition-{partition}")
        self.runners[partition] = (runner, task)
        self._emit("taken", partition=partition)

    async def _stop(self, partition: int) -> None:
        entry = self.runners.pop(partition, None)
        if entry is None:
            return
        runner, task = entry
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self._emit("given_up", partition=partition, readings=runner.progress.readings)

    async def _reap(self) -> None:
        """Stop and give up partitions whose runner ended (an error, or an expired lease)."""
        for partition, (_runner, task) in list(self.runners.items()):
            if task.done():
                exc = None if task.cancelled() else task.exception()
                log.warning("partition %d stopped: %s", partition, exc)
                await self._stop(partition)
                await self.ownership.release([partition])

    def _status(self) -> None:
        for partition, (runner, _task) in self.runners.items():
            progress = runner.progress
            if progress.caught_up_at is not None and not progress.announced:
                progress.announced = True
                self._emit(
                    "caught_up",
                    partition=partition,
                    at=progress.caught_up_at,
                    taken_at=progress.taken_at,
                    started_from=progress.started_from,
                    readings=progress.readings,
                )
        self._emit(
            "status",
            partitions={
                str(p): [r.progress.seq, r.progress.readings] for p, (r, _t) in self.runners.items()
            },
            readings=sum(r.progress.readings for r, _t in self.runners.values()),
            alert_events=self.counters.alert_events,
            cpu_s=time.process_time(),
            max_rss_mb=peak_rss_mb(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep leases and runners until `stop` is set; then give every partition up."""
        ttl = self.settings.scale.lease_ttl_s
        next_tick = 0.0
        notifying = [
            asyncio.create_task(n.run(), name=f"notify-{n.sender.name}") for n in self.notifiers
        ]
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + ttl / 3
                    try:
                        taken, given_up = await self.ownership.tick()
                    except Exception as exc:  # the database is out of reach: leases run out
                        log.warning("renewing the partition leases failed: %s", exc)
                        taken, given_up = [], []
                    for partition in given_up:
                        await self._stop(partition)
                    for partition in taken:
                        self._start(partition)
                    # Leases not renewed in time are no longer this worker's to act on.
                    for partition in [p for p in self.runners if not self.ownership.valid(p)]:
                        await self._stop(partition)
                await self._reap()
                self._status()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATUS_EVERY_S)
        finally:
            for partition in list(self.runners):
                await self._stop(partition)
            with contextlib.suppress(Exception):
                await self.ownership.leave()
            for task in notifying:  # each closes its sender as it ends
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
