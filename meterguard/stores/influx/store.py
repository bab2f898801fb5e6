"""InfluxSeriesStore: batches by size and time, retries with backoff, never loses silently."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meterguard.errors import StoreUnavailableError
from meterguard.model import MeterRegistry, ReadingBatch
from meterguard.stores import Series, check_query
from meterguard.stores.config import InfluxSettings
from meterguard.stores.influx.lineproto import LineEncoder
from meterguard.stores.influx.spool import Chunk, Spool
from meterguard.stores.influx.writers import (
    RejectedWriteError,
    TransientWriteError,
    V1Writer,
    V2Writer,
    Writer,
)
from meterguard.stores.sqlite_series import bucket_width_s

log = logging.getLogger(__name__)

#: While the server stays down, how often the buffered amount is logged again.
_OUTAGE_LOG_EVERY_S = 30.0


class InfluxQueryError(StoreUnavailableError):
    """InfluxDB answered a query with an error."""

    def __init__(self, reason: str) -> None:
        super().__init__("InfluxDB", reason)


@dataclass(slots=True)
class InfluxCounters:
    """What the InfluxDB store did, for the health endpoint and the logs."""

    rows_in: int = 0
    rows_written: int = 0
    rows_rejected: int = 0
    rows_empty: int = 0
    requests: int = 0
    failed_requests: int = 0
    rows_persisted: int = 0


def _log_crash(task: asyncio.Task[None]) -> None:
    # The next write starts a new sender; the buffer is untouched, so nothing is lost.
    if not task.cancelled() and task.exception() is not None:
        log.error("InfluxDB sender stopped", exc_info=task.exception())


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxSeriesStore:
    """Series store on InfluxDB, through the v1 API (`api="v1"`) or the v2 write API.

    `write` encodes a batch to line protocol at once and returns; a background task sends
    chunks of up to `batch_rows` readings (or whatever `flush_interval_s` gathered), one
    request at a time, in order. A failed request is retried with exponential backoff; in
    the meantime readings collect in the spool (memory, then files). Readings are keyed by
    series and time in InfluxDB, so a chunk sent twice (answer lost, restart) is stored once.
    """

    def __init__(
        self,
        settings: InfluxSettings,
        registry: MeterRegistry,
        *,
        api: str = "v1",
        spool_dir: Path,
    ) -> None:
        if api not in ("v1", "v2"):
            raise ValueError(f"unknown InfluxDB API {api!r}")
        self.settings = settings
        self.api = api
        self._encoder = LineEncoder(registry, settings.measurement, settings.precision)
        self._writer: Writer = V1Writer(settings) if api == "v1" else V2Writer(settings)
        self._reader = V1Writer(settings)
        self.spool = Spool(spool_dir, settings.memory_rows, settings.max_buffered_rows)
        self.counters = InfluxCounters()
        self._pending: list[str] = []
        self._pending_since = 0.0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        # v1 with create_database: CREATE DATABASE before the first write (idempotent).
        self._database_ready = not (api == "v1" and settings.create_database)
        self._down_since: float | None = None
        self._last_outage_log = 0.0
        if self.spool.rows:
            log.warning(
                "InfluxDB spool holds %d readings from an earlier run; replaying them first",
                self.spool.rows,
            )

    @property
    def buffered_rows(self) -> int:
        """Readings accepted but not yet confirmed by the server."""
        return self.spool.rows + len(self._pending)

    def stats(self) -> dict[str, int | bool]:
        """Counters plus the buffer state, for the health endpoint."""
        c = self.counters
        return {
            "rows_in": c.rows_in,
            "rows_written": c.rows_written,
            "rows_buffered": self.buffered_rows,
            "rows_on_disk": self.spool.disk_rows,
            "rows_spilled": self.spool.spilled_rows,
            "rows_dropped": self.spool.dropped_rows,
            "rows_rejected": c.rows_rejected,
            "rows_empty": c.rows_empty,
            "requests": c.requests,
            "failed_requests": c.failed_requests,
            "server_down": self._down_since is not None,
        }

    # --- writing ----------------------------------------------------------------------

    async def write(self, batch: ReadingBatch) -> None:
        """Accept every row of a batch; it reaches the server in the background."""
        lines, empty = self._encoder.encode(batch)
        self.counters.rows_in += len(batch)
        self.counters.rows_empty += empty
        if not lines:
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.extend(lines)
        limit = self.settings.batch_rows
        while len(self._pending) >= limit:
            self._seal(limit)
        self._ensure_sender()

    def _seal(self, limit: int | None = None) -> None:
        """Move pending lines (up to limit) into the spool as one chunk."""
        if not self._pending:
            return
        take = self._pending if limit is None else self._pending[:limit]
        self._pending = [] if limit is None else self._pending[limit:]
        self._pending_since = time.monotonic()
        self.spool.push("\n".join(take), len(take))
        self._wake.set()

    def _ensure_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(
                self._send_loop(), name="influx-sender"
            )
            self._sender.add_done_callback(_log_crash)

    async def _send_loop(self) -> None:
        delay = self.settings.retry_initial_s
        sending: dict[asyncio.Task[bool], Chunk] = {}
        try:
            while True:
                while len(sending) < self.settings.max_in_flight:
                    chunk = self.spool.oldest_except(sending.values())
                    if chunk is None:
                        break
                    sending[asyncio.create_task(self._send(chunk))] = chunk
                    self.spool.in_flight.add(chunk)
                if not sending:
                    await self._wait_for_data()
                    continue
                self._wake.clear()
                waker = asyncio.create_task(self._wake.wait())
                try:
                    done, _ = await asyncio.wait(
                        [*sending, waker], return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waker.cancel()
                failed = False
                for task in done:
                    if task is not waker:
                        self.spool.in_flight.discard(sending.pop(task))
                        failed |= not task.result()
                if not failed:
                    delay = self.settings.retry_initial_s
                    continue
                # Let the requests still out finish, then back off before trying again.
                if sending:
                    await asyncio.wait(sending)
                    self.spool.in_flight.clear()
                    sending.clear()
                if self._closing:
                    return
                await self._sleep_unless_woken(delay * (0.75 + 0.5 * random.random()))
                delay = min(delay * 2, self.settings.retry_max_s)
        finally:
            for task in sending:
                task.cancel()
            self.spool.in_flight.clear()

    async def _wait_for_data(self) -> None:
        """Wait for a sealed chunk; seal the pending lines once they are old enough."""
        if self._pending:
            wait = self._pending_since + self.settings.flush_interval_s - time.monotonic()
            if wait <= 0:
                self._seal()
                return
        else:
            wait = self.settings.flush_interval_s
        await self._sleep_unless_woken(wait)

    async def _sleep_unless_woken(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _send(self, chunk: Chunk) -> bool:
        """Send one chunk; True when it is done with (written or rejected)."""
        self.counters.requests += 1
        try:
            if not self._database_ready:
                await self._ensure_database()
            await self._writer.send(chunk.load())
        except TransientWriteError as exc:
            self.counters.failed_requests += 1
            self._note_outage(exc)
            return False
        except RejectedWriteError as exc:
            self.counters.rows_rejected += chunk.rows
            log.error("InfluxDB rejected %d readings: %s", chunk.rows, exc)
        else:
            self.counters.rows_written += chunk.rows
            if self._down_since is not None:
                log.info(
                    "InfluxDB back after %.0f s; replaying %d buffered readings",
                    time.monotonic() - self._down_since,
                    self.buffered_rows,
                )
                self._down_since = None
        self.spool.remove(chunk)
        return True

    def _note_outage(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._last_outage_log = now
            log.warning(
                "InfluxDB write failed (%s); buffering, %d readings waiting",
                exc,
                self.buffered_rows,
            )
        elif now - self._last_outage_log >= _OUTAGE_LOG_EVERY_S:
            self._last_outage_log = now
            log.warning(
                "InfluxDB still failing for %.0f s (%s); %d readings buffered, %d on disk, "
                "%d dropped",
                now - self._down_since,
                exc,
                self.buffered_rows,
                self.spool.disk_rows,
                self.spool.dropped_rows,
            )

    async def flush(self, within_s: float | None = None) -> bool:
        """Send everything accepted so far; True if the buffer emptied within the timeout."""
        self._seal()
        if not len(self.spool):
            return True
        self._ensure_sender()
        deadline = None if within_s is None else time.monotonic() + within_s
        self._wake.set()  # cut a retry wait short: try now
        while len(self.spool):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        """Flush for up to `timeout_s`; whatever the server did not take goes to spill files."""
        flushed = await self.flush(self.settings.timeout_s)
        self._closing = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if not flushed:
            moved = self.spool.persist()
            self.counters.rows_persisted += moved
            log.warning(
                "InfluxDB unreachable at stop: %d readings kept in %s for the next start",
                self.spool.rows,
                self.spool.folder,
            )
        await self._writer.close()
        await self._reader.close()

    # --- reading ----------------------------------------------------------------------

    @property
    def _database(self) -> str:
        return self.settings.database if self.api == "v1" else self.settings.bucket

    def _source(self) -> str:
        measurement = _quote_ident(self.settings.measurement)
        if self.api == "v1" and self.settings.retention_policy:
            return f"{_quote_ident(self.settings.retention_policy)}.{measurement}"
        return measurement

    async def influxql(self, statement: str) -> dict[str, Any]:
        """Run one InfluxQL statement; return its result.

        Raises InfluxQueryError (a StoreUnavailableError) when InfluxDB answers with an
        error, StoreUnavailableError when it cannot be reached or answers nonsense.
        """
        data = await self._reader.query(statement, self._database)
        if "error" in data:
            raise InfluxQueryError(str(data["error"]))
        results = data.get("results") or [{}]
        result: dict[str, Any] = results[0]
        if "error" in result:
            raise InfluxQueryError(str(result["error"]))
        return result

    async def ping(self) -> None:
        """Ask the server for its databases: it answers, through the reads' credentials."""
        # SHOW DATABASES needs no database to exist yet (a fresh server before the first
        # write is up, not down) and goes through the same session and auth as every read.
        await self.influxql("SHOW DATABASES")

    async def create_database(self) -> None:
        """CREATE DATABASE (v1; a no-op if it exists)."""
        await self.influxql(f"CREATE DATABASE {_quote_ident(self.settings.database)}")
        self._database_ready = True

    async def _ensure_database(self) -> None:
        try:
            await self.create_database()
        except StoreUnavailableError as exc:
            raise TransientWriteError(f"CREATE DATABASE failed: {exc}") from exc

    async def query(
        self,
        meter: str,
        start: float,
        end: float,
        fields: Sequence[str],
        points: int | None = None,
    ) -> Series:
        """Return a meter's fields over a window (InfluxQL), averaged into buckets if asked."""
        check_query(fields, points)
        if not fields:
            empty = np.zeros(0)
            return Series(meter=meter, ts=empty, values={})
        where = (
            f"WHERE {_quote_ident('meter')} = {_quote_string(meter)}"
            f" AND time >= {int(start * 1e9)} AND time <= {int(end * 1e9)}"
        )
        if points is None:
            columns = ", ".join(_quote_ident(f) for f in fields)
            statement = f"SELECT {columns} FROM {self._source()} {where}"
        else:
            width_ms = round(bucket_width_s(start, end, points) * 1000)
            offset_ms = int(start * 1000) % width_ms
            columns = ", ".join(f"mean({_quote_ident(f)}) AS {_quote_ident(f)}" for f in fields)
            statement = (
                f"SELECT {columns} FROM {self._source()} {where}"
                f" GROUP BY time({width_ms}ms, {offset_ms}ms) fill(none)"
            )
        result = await self.influxql(statement)
        series = result.get("series") or []
        rows: list[list[Any]] = series[0]["values"] if series else []
        cols: list[str] = series[0]["columns"] if series else ["time", *fields]
        table = np.array(
            [[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64
        ).reshape(len(rows), len(cols))
        index = {c: i for i, c in enumerate(cols)}
        return Series(
            meter=meter,
            ts=table[:, index["time"]] / 1000.0,
            values={f: table[:, index[f]].copy() for f in fields},
        )
