"""MQTT source: QoS 1 subscriptions on a persistent session, decoded in bulk into batches.

paho-mqtt runs the connection in its own thread. Its per-message path is the bottleneck
of a Python consumer (one-byte socket reads, a message object, a callback and one PUBACK
write per message), so `_LeanClient` reads the socket in 64 KiB chunks, queues the raw
topic and payload of each PUBLISH, and leaves the acknowledgement to the source: once the
series store has committed a batch (`deliveries()`: the service calls the batch's
`on_committed`), its PUBACKs go out in one write. A reading is therefore acknowledged only
once it is stored; if meterguard dies first the broker delivers it again (at least once).
A payload that cannot be used, whatever the reason, is kept as a dead letter and
acknowledged with its batch: it is never delivered again.

The inbox between the client thread and the event loop is bounded twice: the broker may
have at most ReceiveMaximum (MQTT 5, sent as 2 x batch_max) unacknowledged QoS 1/2
messages in flight to us (for MQTT 3.1.1 the broker's own `max_inflight_messages` sets
that limit, see deploy/mosquitto.conf), and the inbox has a hard cap of INBOX_FACTOR x
batch_max messages. The cap is what holds when the first bound does not: QoS 0 has no
flow control, and Mosquitto 2.0 overshoots Receive Maximum after a burst of
acknowledgements. At the cap the client thread stops reading the socket until the event
loop has taken the inbox, so TCP holds the broker back and nothing is dropped; each such
wait is counted (`inbox_full`) and the first of an episode is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.base import Delivery
from collector.mqtt_decoders import Decoder, make_decoder
from meterguard.errors import DecodeError
from meterguard.model import QUANTITY_INDEX, MeterRegistry, ReadingBatch
from meterguard.settings import MqttSourceSettings
from meterguard.status import MeterStatus, StatusBoard

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
_CHUNK = 65536
#: The inbox holds at most this many batches' worth of raw messages.
INBOX_FACTOR = 4
#: Receive Maximum (MQTT 5): unacknowledged messages in flight, this many batches' worth.
RECEIVE_FACTOR = 2
#: Raw message as queued by the client thread: topic, payload, message id, connection number.
RawMessage = tuple[bytes, bytes, int, int]
#: Longest reason kept with a dead letter.
REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload that could not be used, kept for inspection."""

    at: float
    topic: str
    reason: str
    payload: bytes


class _LeanClient(paho.Client):
    """A paho client whose PUBLISH path only queues raw messages; see the module docstring."""

    def __init__(self, sink: Callable[[bytes, bytes, int], None], **kwargs: Any) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, **kwargs)
        self._sink = sink
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self.generation = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rsock:  # a new connection: nothing old may leak into it
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(_CHUNK)
            if not data:
                return data
            self._rbuf, self._rpos = data, 0
        chunk = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Process every packet already buffered, not only the one select() announced."""
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and self._sock is self._rsock
            and self._rpos < len(self._rbuf)
        ):
            rc = super().loop_read(max_packets)
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        command: int = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if qos == 2:  # exactly-once needs paho's own bookkeeping
            return super()._handle_publish()
        packet: bytes | bytearray = self._in_packet["packet"]
        end = 2 + ((packet[0] << 8) | packet[1])
        topic = bytes(packet[2:end])
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            length = shift = 0
            while True:  # properties length, a variable byte integer
                byte = packet[end]
                end += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            end += length
        self._sink(topic, bytes(packet[end:]), mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: list[int]) -> None:
        """Send the PUBACKs of many QoS 1 messages in one write (thread-safe)."""
        if mids and self._sock is not None:
            blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._packet_queue(PacketTypes.PUBACK << 4, blob, 0, 0)


@dataclass(frozen=True, slots=True)
class _Route:
    decoder: Decoder
    meter: str | None


class TopicTemplate:
    """A topic template like `shellies/{meter}/status/em:0` as a filter and a matcher."""

    def __init__(self, template: str) -> None:
        self.levels = template.split("/")
        self.meter_level = self.levels.index("{meter}") if "{meter}" in self.levels else None
        self.filter = "/".join("+" if lvl == "{meter}" else lvl for lvl in self.levels)

    def match(self, topic: str) -> tuple[bool, str | None]:
        """Return whether a topic fits the template, and the meter level's value."""
        parts = topic.split("/")
        if self.levels[-1] == "#":
            if len(parts) < len(self.levels) - 1:
                return False, None
        elif len(parts) != len(self.levels):
            return False, None
        for want, got in zip(self.levels, parts, strict=False):
            if want == "#":
                break
            if want not in ("+", "{meter}", got):
                return False, None
        meter = None if self.meter_level is None else parts[self.meter_level]
        return True, meter


class MqttSource:
    """Readings from an MQTT broker: QoS 1, persistent session, bulk decoding, dead letters."""

    def __init__(
        self, settings: MqttSourceSettings, registry: MeterRegistry, status: StatusBoard
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._registry = registry
        self._status = status
        self._templates = [
            (TopicTemplate(s.topic), make_decoder(s.format, s.timezone))
            for s in settings.subscriptions
        ]
        self._routes: dict[bytes, _Route | None] = {}
        self._slots: dict[str, int | None] = {}
        self._seen: dict[int, MeterStatus] = {}
        self._inbox: list[RawMessage] = []
        self._lock = threading.Lock()
        #: Signalled when the event loop has emptied the inbox (the client thread waits on it).
        self._room = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken = False
        self._client: _LeanClient | None = None
        self._ever_connected = False
        self._closing = False
        self._down_since: float | None = None
        #: received, readings, malformed, decoder_error, unknown_meter, unrouted, connects,
        #: inbox_full (docs/COLLECTORS.md).
        self.counters: Counter[str] = Counter()
        #: Malformed payloads per topic.
        self.malformed: Counter[str] = Counter()
        self.dead_letters: deque[DeadLetter] = deque(maxlen=settings.dead_letters)
        self.connected = threading.Event()
        #: Set when the broker has acknowledged the subscriptions (SUBACK).
        self.subscribed = threading.Event()
        self._inbox_max = INBOX_FACTOR * settings.batch_max
        self._overflowing = False
        self.health = status.register_source(
            self.name, self.counters, self.dead_letters, kind=settings.type
        )
        self._decoder_failed_logged = False

    # -- the client thread -------------------------------------------------------------

    def _sink(self, topic: bytes, payload: bytes, mid: int) -> None:
        client = self._client
        item = (topic, payload, mid, client.generation if client else 0)
        with self._lock:
            if len(self._inbox) >= self._inbox_max:
                self._wait_for_room()
                if self._closing:
                    return  # not acknowledged: the broker keeps it for the next session
            self._inbox.append(item)
            full = len(self._inbox) >= self.settings.batch_max
        if full and not self._woken and self._loop is not None and self._wake is not None:
            self._woken = True
            self._loop.call_soon_threadsafe(self._wake.set)

    @property
    def inbox_size(self) -> int:
        """Raw messages received and not yet taken into a batch."""
        with self._lock:
            return len(self._inbox)

    def _wait_for_room(self) -> None:
        """Hold the client thread until the inbox is taken (called with the lock held)."""
        self.counters["inbox_full"] += 1
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "mqtt %s: inbox full (%d messages); reading from the broker paused",
                self.name,
                self._inbox_max,
            )
        # The wake-up for the event loop went out when batch_max messages were waiting.
        while len(self._inbox) >= self._inbox_max and not self._closing:
            self._room.wait(0.5)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            log.warning("mqtt %s: subscription refused: %s", self.name, failed)
            # Connected but deaf: as good as a broker out of reach for readiness.
            self.health.upstream(False, f"broker refused the subscription: {failed}")
            return
        self.subscribed.set()

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            self._note_down(f"refused: {reason}")
            return
        self.health.upstream(True)
        assert self._client is not None
        self._client.generation += 1
        self.counters["connects"] += 1
        session = "resumed" if flags.session_present else "new"
        if self._down_since is not None:
            log.info(
                "mqtt %s connected again after %.0f s (%s session)",
                self.name,
                time.monotonic() - self._down_since,
                session,
            )
        elif not self._ever_connected:
            log.info("mqtt %s connected (%s session)", self.name, session)
        self._down_since = None
        self._ever_connected = True
        group = self.settings.share_group
        topics: list[tuple[str, int]] = [
            (f"$share/{group}/{t.filter}" if group else t.filter, self.settings.qos)
            for t, _ in self._templates
        ]
        client.subscribe(topics)
        self.connected.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._closing:
            self._note_down(f"disconnected: {reason}")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._note_down("cannot connect")

    def _note_down(self, why: str) -> None:
        self.health.upstream(False, f"broker {self.settings.host}:{self.settings.port} {why}")
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "mqtt %s (%s:%d) %s; reconnecting with backoff",
                self.name,
                self.settings.host,
                self.settings.port,
                why,
            )

    # -- lifecycle ---------------------------------------------------------------------

    def _make_client(self) -> _LeanClient:
        s = self.settings
        v5 = s.protocol == "5"
        client = _LeanClient(
            self._sink,
            client_id=s.client_id or f"meterguard-{s.name}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.reconnect_delay_set(1, int(s.backoff_max_s))
        client.max_inflight_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        # QoS 2 keeps paho's own exactly-once flow (acknowledged by paho on PUBREL).
        client.on_message = lambda _c, _u, msg: self._sink(
            msg.topic.encode(), bytes(msg.payload), 0
        )
        client.on_connect_fail = self._on_connect_fail
        return client

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        # Entered again after a restart: what an earlier session left unacknowledged comes
        # again from the broker, so nothing of it is kept here.
        with self._lock:
            self._closing = False
            self._overflowing = False
            self._woken = False
            self._inbox = []
        self.connected.clear()
        self.subscribed.clear()
        self._client = client = self._make_client()
        kwargs: dict[str, Any] = {}
        if self.settings.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.settings.session_expiry_s
            props.ReceiveMaximum = min(65535, RECEIVE_FACTOR * self.settings.batch_max)
            kwargs = {"clean_start": False, "properties": props}
        client.connect_async(
            self.settings.host, self.settings.port, self.settings.keepalive_s, **kwargs
        )
        client.loop_start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client = self._client
        if client is None:
            return
        # Readings still queued here are unacknowledged: the broker keeps them for the
        # next session.
        with self._lock:
            self._closing = True
            self._room.notify_all()  # a client thread waiting for room gives up
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._client = None

    async def wait_connected(self, within_s: float) -> None:
        """Wait until the broker acknowledged the subscriptions (tests and benchmarks)."""
        await asyncio.to_thread(self.subscribed.wait, within_s)
        if not self.subscribed.is_set():
            raise TimeoutError(f"mqtt {self.name}: not subscribed after {within_s} s")

    # -- the event loop ----------------------------------------------------------------

    def _take(self) -> list[RawMessage]:
        with self._lock:
            items, self._inbox = self._inbox, []
            self._woken = False
            self._room.notify_all()
            if self._overflowing:
                self._overflowing = False
                log.info(
                    "mqtt %s: inbox taken; reading from the broker again (%d pauses so far)",
                    self.name,
                    self.counters["inbox_full"],
                )
        return items

    def _route(self, topic: bytes) -> _Route | None:
        route = self._routes.get(topic, False)
        if route is not False:
            return route  # type: ignore[return-value]
        text = topic.decode("utf-8", "replace")
        found: _Route | None = None
        for template, decoder in self._templates:
            ok, meter = template.match(text)
            if ok:
                mapped = self.settings.meter_map.get(meter, meter) if meter else None
                found = _Route(decoder, mapped)
                break
        if len(self._routes) > 100_000:
            self._routes.clear()
        self._routes[topic] = found
        return found

    def _dead(self, topic: bytes, payload: bytes, reason: str, event: str = "malformed") -> None:
        """Keep a payload that cannot be used, counted by why (`event`)."""
        name = topic.decode("utf-8", "replace")
        if event == "malformed":
            self.malformed[name] += 1
        self.counters[event] += 1
        if self.dead_letters.maxlen:
            letter = DeadLetter(time.time(), name, reason[:REASON_CHARS], payload[:4096])
            self.dead_letters.append(letter)

    def _decoder_failed(self, topic: bytes, payload: bytes, exc: Exception) -> None:
        """Keep a payload whose decoder raised an unexpected error (a hole in the decoder)."""
        reason = f"decoder failed: {type(exc).__name__}: {exc}"
        self._dead(topic, payload, reason, "decoder_error")
        if not self._decoder_failed_logged:
            # Once per source: the dead letters and the counter tell about later ones.
            self._decoder_failed_logged = True
            log.error(
                "mqtt %s: a payload on %s broke its decoder; it is kept as a dead letter "
                "(further ones are only counted)",
                self.name,
                topic.decode("utf-8", "replace"),
                exc_info=exc,
            )

    def decode(self, items: list[RawMessage]) -> ReadingBatch:
        """Turn raw messages into one batch; bad ones go to the dead letters, never abort.

        Whatever a payload does to its decoder, only that payload is lost: its rows are
        taken back and it is kept as a dead letter with the reason.
        """
        now = time.time()
        slots = self._slots
        n = max(1, len(items))
        ts = np.empty(n, dtype=np.float64)
        slot = np.empty(n, dtype=np.int32)
        events = np.zeros(n, dtype=np.uint32)
        values = np.full((len(QUANTITY_INDEX), n), np.nan, dtype=np.float64)
        index = QUANTITY_INDEX
        seen: dict[int, int] = {}
        r = 0
        for topic, payload, _mid, _gen in items:
            route = self._route(topic)
            if route is None:
                self.counters["unrouted"] += 1
                continue
            first = r
            placed: list[int] = []
            try:
                readings = route.decoder(payload, route.meter, now)
                for meter, t, quantities, mask in readings:
                    s = slots.get(meter, -1)
                    if s == -1:
                        s = self._slot(meter)
                    if s is None:
                        self._dead(topic, payload, f"unknown meter {meter!r}", "unknown_meter")
                        continue
                    if r == n:  # a message carried several readings: grow
                        n *= 2
                        ts = np.concatenate([ts, np.empty(n - r)])
                        slot = np.concatenate([slot, np.empty(n - r, dtype=np.int32)])
                        events = np.concatenate([events, np.zeros(n - r, dtype=np.uint32)])
                        grown = np.full((len(index), n), np.nan)
                        grown[:, :r] = values[:, :r]
                        values = grown
                    ts[r] = t
                    slot[r] = s
                    events[r] = mask
                    for q, v in quantities.items():
                        values[index[q], r] = v
                    placed.append(s)
                    r += 1
            except Exception as exc:  # any failure loses this payload only
                values[:, first:r] = np.nan
                events[first:r] = 0
                r = first
                if isinstance(exc, DecodeError):
                    self._dead(topic, payload, exc.reason)
                else:
                    self._decoder_failed(topic, payload, exc)
                continue
            for s in placed:
                seen[s] = seen.get(s, 0) + 1
        self.counters["received"] += len(items)
        self.counters["readings"] += r
        self._update_status(seen, now)
        return ReadingBatch(ts=ts[:r], slot=slot[:r], values=values[:, :r], events=events[:r])

    def _slot(self, meter: str) -> int | None:
        """Look a meter up in the registry once; the answer is cached (also a miss)."""
        slot = self._registry.slot(meter) if meter in self._registry else None
        if len(self._slots) > 1_000_000:
            self._slots.clear()
        self._slots[meter] = slot
        return slot

    def _update_status(self, seen: dict[int, int], now: float) -> None:
        for s, count in seen.items():
            status = self._seen.get(s)
            if status is None:
                status = self._seen[s] = self._status.meter(self._registry.by_slot(s).id, self.name)
            status.last_ok = now
            status.readings += count
            if status.consecutive_failures:
                log.info("meter %s publishes again", self._registry.by_slot(s).id)
                status.consecutive_failures = 0

    def check_silence(self, now: float) -> int:
        """Mark meters silent for 3 publishing intervals as failing; return how many are."""
        limit = 3.0 * self.settings.interval_s
        silent = 0
        for s, status in self._seen.items():
            if status.last_ok is not None and now - status.last_ok > limit:
                silent += 1
                if not status.consecutive_failures:
                    status.consecutive_failures = 1
                    status.errors += 1
                    status.last_error = f"silent for more than {limit:g} s"
                    status.last_error_at = now
                    log.warning(
                        "meter %s (mqtt %s) went silent", self._registry.by_slot(s).id, self.name
                    )
        return silent

    def ack(self, items: list[RawMessage]) -> None:
        """Acknowledge messages of the current connection (older ones come again)."""
        self._ack_ids([(mid, gen) for _t, _p, mid, gen in items if mid])

    def _ack_ids(self, ids: list[tuple[int, int]]) -> None:
        client = self._client
        if client is None or self.settings.qos == 0 or not ids:
            return
        generation = client.generation
        client.ack_many([mid for mid, gen in ids if gen == generation])

    async def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """Yield a batch every flush_s (sooner when batch_max messages wait), unacknowledged.

        Each delivery's `on_committed` sends the PUBACKs of its messages, dead letters
        included; call it once the readings are stored. A batch without a usable reading
        is delivered too (empty), so that acknowledgements keep the order of arrival.
        """
        assert self._wake is not None, "use the source as an async context manager"
        flush = self.settings.flush_s
        next_check = time.monotonic()
        while True:
            if time.monotonic() >= next_check:
                self.check_silence(time.time())
                next_check = time.monotonic() + min(10.0, self.settings.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), flush)
            self._wake.clear()
            items = self._take()
            if not items:
                continue
            batch = self.decode(items)
            ids = [(mid, gen) for _t, _p, mid, gen in items if mid]
            yield Delivery(batch, functools.partial(self._ack_ids, ids))

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        """Yield the batches of deliveries(), acknowledged once the consumer takes the next."""
        async for delivery in self.deliveries():
            if len(delivery.batch):
                yield delivery.batch  # resumed once the consumer has taken the batch
            if delivery.on_committed is not None:
                delivery.on_committed()
