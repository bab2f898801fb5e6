"""MQTT source: QoS 1 subscriptions on a persistent session, decoded in bulk into batches.

paho-mqtt's client runs in the asyncio event loop through its public hooks only: the
socket callbacks (`on_socket_open`, `on_socket_close`, `on_socket_register_write`,
`on_socket_unregister_write`) put its socket in the loop's readers and writers, where
`loop_read` and `loop_write` do the work, a supervisor task calls `loop_misc` for the
keepalive, and `on_message` queues each message's topic, payload and id. Connecting
(name lookup, TCP, TLS) blocks, so `reconnect()` runs in a worker thread; a lost or
refused connection is made again with jittered exponential backoff.

Acknowledgement is manual (`manual_ack=True`): a QoS 1 or 2 message is acknowledged
with `ack()` only once the series store has committed the batch it went into
(`deliveries()`: the service calls the batch's `on_committed`). A reading is therefore
acknowledged only once it is stored; if meterguard dies first the broker delivers it
again (at least once). A payload that cannot be used, whatever the reason, is kept as a
dead letter and acknowledged with its batch: it is never delivered again.

MQTT 3.1.1 is the default protocol and MQTT 5 an option: the source needs nothing of
MQTT 5 that 3.1.1 lacks (a persistent session, QoS 1, manual acknowledgement), and paho
parses a properties object for every MQTT 5 PUBLISH, which about doubles its CPU per
message (docs/COLLECTORS.md).

The inbox is bounded twice: the broker may have only so many unacknowledged QoS 1/2
messages in flight to us (MQTT 3.1.1: the broker's own `max_inflight_messages`, see
deploy/mosquitto.conf; MQTT 5: the Receive Maximum we send, 2 x batch_max), and the
inbox has a hard cap of INBOX_FACTOR x batch_max messages. The cap is what holds
when the first bound does not: QoS 0 has no flow control, and Mosquitto 2.0 overshoots
Receive Maximum after a burst of acknowledgements. At the cap the source stops reading
the socket until the inbox is taken, so TCP holds the broker back and nothing is
dropped; each such pause is counted (`inbox_full`) and the first of an episode logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector.base import Delivery, jittered_backoff
from collector.mqtt_decoders import Decoder, make_decoder
from collector.registry import register_source
from meterguard.calendar import known_zone
from meterguard.errors import DecodeError
from meterguard.model import QUANTITY_INDEX, MeterRegistry, ReadingBatch
from meterguard.source_settings import SourceSettingsBase
from meterguard.status import (
    FailureKind,
    MeterStatus,
    ReadFailedError,
    StatusBoard,
    record_failure,
)

log = logging.getLogger(__name__)

#: The inbox holds at most this many batches' worth of raw messages.
INBOX_FACTOR = 4
#: Receive Maximum (MQTT 5): unacknowledged messages in flight, this many batches' worth.
RECEIVE_FACTOR = 2
#: Raw message as queued by on_message: topic, payload, message id, QoS, connection number.
RawMessage = tuple[str, bytes, int, int, int]
#: Longest reason kept with a dead letter.
REASON_CHARS = 300
#: Messages read in one go before the event loop gets its turn (the socket stays ready).
READ_BURST = 1000
#: Seconds between keepalive checks (loop_misc) and checks for a lost connection.
SUPERVISE_S = 0.5
CONNECT_BACKOFF_BASE_S = 1.0
#: What loop_read returns while the connection lasts.
_READ_OK = MQTTErrorCode.MQTT_ERR_SUCCESS
#: The topic queued for a message whose topic is not UTF-8: no template matches it.
_UNREADABLE_TOPIC = "\x00"


class MqttSubscription(BaseModel):
    """One topic template and the payload format published on it."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(
        min_length=1,
        description="Topic template; {meter} matches one level and names the meter, "
        "e.g. shellies/{meter}/status/em:0.",
    )
    format: Literal["shelly", "tasmota", "meterguard"] = Field(
        description="Payload decoder: shelly (Pro 3EM em:0 / NotifyStatus), tasmota "
        "(SENSOR ENERGY), meterguard (docs/COLLECTORS.md)."
    )
    timezone: str | None = Field(
        default=None,
        description="IANA time zone of devices that send local time without an offset "
        "(Tasmota's Time unless its Timezone is 0), e.g. Asia/Kolkata; default UTC.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else known_zone(value)

    @model_validator(mode="after")
    def _has_meter(self) -> MqttSubscription:
        if self.format != "meterguard" and self.topic.count("{meter}") != 1:
            raise ValueError(f"topic {self.topic!r} must contain {{meter}} exactly once")
        return self


class MqttSourceSettings(SourceSettingsBase):
    """An MQTT broker subscription at QoS 1 with a persistent session."""

    type: Literal["mqtt"] = "mqtt"
    host: str = Field(default="127.0.0.1", description="Broker address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    client_id: str | None = Field(
        default=None,
        description="Fixed client id of the persistent session (default: meterguard-<name>); "
        "workers sharing a fleet each need their own.",
    )
    protocol: Literal["3.1.1", "5"] = Field(
        default="3.1.1",
        description="MQTT protocol version: 3.1.1 (the default: the same guarantees here at "
        "about half the client's CPU per message) or 5 (docs/COLLECTORS.md).",
    )
    qos: Literal[0, 1, 2] = Field(default=1, description="Subscription QoS.")
    session_expiry_s: int = Field(
        default=86400,
        ge=0,
        description="How long the broker keeps the session (and queues readings) while "
        "meterguard is away. MQTT 3.1.1 has no duration: 0 asks for a clean session, any "
        "other value keeps it (clean_session=false) as long as the broker's own expiry "
        "allows (Mosquitto: persistent_client_expiration).",
    )
    interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the devices publish; a meter silent for several intervals "
        "is reported offline (comms loss).",
    )
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive.")
    username: str | None = Field(default=None, description="Broker user name.")
    password: str | None = Field(default=None, description="Broker password.")
    tls: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(default=None, description="CA bundle for TLS (default: system).")
    cert_file: Path | None = Field(default=None, description="Client certificate for TLS.")
    key_file: Path | None = Field(default=None, description="Client key for TLS.")
    share_group: str | None = Field(
        default=None,
        description="Subscribe as $share/<group>/<topic> (a shared subscription: MQTT 5, "
        "and MQTT 3.1.1 on brokers that take it, Mosquitto among them) so several workers "
        "split one fleet.",
    )
    meter_map: dict[str, str] = Field(
        default_factory=dict,
        description="Topic name -> meter id, for devices whose topic is not the meter id.",
    )
    batch_max: int = Field(default=5000, ge=1, description="Readings per batch at most.")
    flush_s: float = Field(
        default=0.05, gt=0, description="Longest wait before a partial batch is handed on."
    )
    dead_letters: int = Field(
        default=1000, ge=0, description="Malformed payloads kept (newest) with their reason."
    )
    backoff_max_s: float = Field(default=60.0, gt=0, description="Longest reconnect wait.")
    subscriptions: list[MqttSubscription] = Field(
        min_length=1, description="Topic templates and their payload formats."
    )

    def meter_ids(self) -> list[str]:
        """Return the meters named in meter_map (others come from topics at run time)."""
        return list(self.meter_map.values())

    def meter_key(self, index: int) -> str:
        """Return the meter_map entry of the `index`-th meter, e.g. meter_map.dev7."""
        return f"meter_map.{list(self.meter_map)[index]}"

    def resolve_paths(self, base: Path) -> None:
        """Make TLS file paths absolute against the config file's folder."""
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                setattr(self, name, base / value)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload that could not be used, kept for inspection."""

    at: float
    topic: str
    reason: str
    payload: bytes


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


def _tls_pending(client: paho.Client) -> bool:
    """Tell whether TLS has decrypted bytes buffered that the socket no longer signals."""
    sock = client.socket()
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


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
        self._routes: dict[str, _Route | None] = {}
        self._slots: dict[str, int | None] = {}
        self._seen: dict[int, MeterStatus] = {}
        self._inbox: list[RawMessage] = []
        self._inbox_max = INBOX_FACTOR * settings.batch_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake: asyncio.Event | None = None
        self._client: paho.Client | None = None
        self._supervisor: asyncio.Task[None] | None = None
        #: The socket in the event loop's readers (None: no connection), its descriptor,
        #: and whether the loop reads it now (not while the inbox is full).
        self._sock: Any = None
        self._fd = -1
        self._reading = False
        #: Connections made so far; a message is acknowledged only on the one it came by.
        self._generation = 0
        #: True from the broker's CONNACK until the connection is gone.
        self._live = False
        self._attempt = 0
        self._rng = np.random.default_rng()
        self._ever_connected = False
        self._closing = False
        self._down_since: float | None = None
        #: Readings and payloads by fate, failures by kind, connects, inbox_full
        #: (docs/COLLECTORS.md).
        self.counters: Counter[str] = Counter()
        #: Malformed payloads per topic.
        self.malformed: Counter[str] = Counter()
        self.dead_letters: deque[DeadLetter] = deque(maxlen=settings.dead_letters)
        #: Set when the broker has acknowledged the subscriptions (SUBACK).
        self.subscribed = asyncio.Event()
        self._overflowing = False
        self.health = status.register_source(
            self.name, self.counters, self.dead_letters, kind=settings.type
        )
        self._decoder_failed_logged = False

    # -- paho's socket hooks: its socket in the event loop --------------------------------

    def _in_loop(self, call: Callable[..., None], *args: Any) -> None:
        """Run `call` in the event loop's thread: now if this is it, else as soon as it can."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            call(*args)
        else:  # reconnect() runs in a worker thread and opens the socket there
            self._loop.call_soon_threadsafe(call, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch, client, sock)

    def _watch(self, client: paho.Client, sock: Any) -> None:
        fd: int = sock.fileno()
        if client is not self._client or client.socket() is not sock:
            # Opened by a connect that finished after the source was closed: not ours now.
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._sock, self._fd = sock, fd
        self._read(True)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho closes the socket right after this call: it must leave the loop first.
        self._in_loop(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        if sock is not self._sock:
            return
        self._read(False)
        assert self._loop is not None
        self._loop.remove_writer(self._fd)
        self._sock, self._fd, self._live = None, -1, False
        self.subscribed.clear()

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._want_write, client, sock)

    def _want_write(self, client: paho.Client, sock: Any) -> None:
        fd: int = sock.fileno()
        if client is self._client and client.socket() is sock:
            assert self._loop is not None
            self._loop.add_writer(fd, client.loop_write)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._no_write, sock)

    def _no_write(self, sock: Any) -> None:
        if sock is self._sock and self._loop is not None:
            self._loop.remove_writer(self._fd)

    def _read(self, on: bool) -> None:
        """Put the socket in the loop's readers (unless the inbox is full), or take it out."""
        loop = self._loop
        if loop is None or self._sock is None:
            return
        if on and not self._reading and len(self._inbox) < self._inbox_max:
            loop.add_reader(self._fd, self._readable)
            self._reading = True
        elif not on and self._reading:
            loop.remove_reader(self._fd)
            self._reading = False

    def _readable(self) -> None:
        """Let paho read what the socket has: up to READ_BURST messages, then the loop's turn."""
        client = self._client
        if client is None:
            return
        inbox = self._inbox  # on_message appends here; only _take() swaps it, between calls
        count = len(inbox)
        stop = min(count + READ_BURST, self._inbox_max)
        read = client.loop_read
        while count < stop:
            # One packet per call, or nothing when the socket has no more (paho tells the
            # two apart for nobody): a call that queued no message ends the burst, and a
            # socket that still has data makes the loop call again.
            if read() != _READ_OK:
                return  # the connection is gone; paho has closed it and said so
            before, count = count, len(inbox)
            if count == before and not _tls_pending(client):
                break
        if count >= self._inbox_max:
            self._pause()
        if count >= self.settings.batch_max and self._wake is not None:
            self._wake.set()

    def _pause(self) -> None:
        """Stop reading the socket until the inbox is taken: TCP holds the broker back."""
        self.counters["inbox_full"] += 1
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "mqtt %s: inbox full (%d messages); reading from the broker paused",
                self.name,
                self._inbox_max,
            )
        self._read(False)

    # -- paho's callbacks --------------------------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # acknowledged with its batch, counted as unrouted
            topic = _UNREADABLE_TOPIC
        # bytes() of bytes is the object itself; paho may hand a bytearray.
        self._inbox.append((topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))

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
            self.counters["connect_failures"] += 1
            self._note_down(f"refused: {reason}")
            return
        self.health.upstream(True)
        self._generation += 1
        self._live = True
        self._attempt = 0
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

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._live = False
        self.subscribed.clear()
        if not self._closing:
            self._note_down(f"disconnected: {reason}")

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

    def _make_client(self) -> paho.Client:
        s = self.settings
        v5 = s.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id or f"meterguard-{s.name}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            # 3.1.1 cannot say how long: 0 is a clean session, anything else a kept one.
            clean_session=None if v5 else s.session_expiry_s == 0,
            # Acknowledged once stored: see the module docstring.
            manual_ack=True,
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
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    async def _supervise(self, client: paho.Client) -> None:
        """Connect, keep the connection alive, and connect again after a loss, with backoff."""
        while True:
            if client.socket() is None:
                if self._attempt:
                    await asyncio.sleep(
                        jittered_backoff(
                            self._attempt - 1,
                            CONNECT_BACKOFF_BASE_S,
                            self.settings.backoff_max_s,
                            self._rng,
                        )
                    )
                self._attempt += 1
                try:
                    # Name lookup, TCP and TLS block: a worker thread does them.
                    await asyncio.to_thread(client.reconnect)
                except (OSError, ValueError) as exc:  # refused, unreachable, TLS failed
                    self.counters["connect_failures"] += 1
                    self._note_down(f"cannot connect: {exc}")
                    continue
            else:
                client.loop_misc()  # keepalive: PINGREQ, and a dead connection closed
            await asyncio.sleep(SUPERVISE_S)

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        # Entered again after a restart: what an earlier session left unacknowledged comes
        # again from the broker, so nothing of it is kept here.
        self._closing = False
        self._overflowing = False
        self._inbox = []
        self._attempt = 0
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
        self._supervisor = asyncio.create_task(self._supervise(client), name=f"mqtt-{self.name}")
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
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        sock = client.socket()
        if sock is not None:
            client.disconnect()
            # Acknowledgements still queued go out first; paho closes the socket once the
            # DISCONNECT is written.
            client.loop_write()
            self._unwatch(sock)  # whatever paho has not closed is not read any more
            if client.socket() is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._client = None

    async def wait_connected(self, within_s: float) -> None:
        """Wait until the broker acknowledged the subscriptions (tests and benchmarks)."""
        try:
            await asyncio.wait_for(self.subscribed.wait(), within_s)
        except TimeoutError:
            raise TimeoutError(f"mqtt {self.name}: not subscribed after {within_s} s") from None

    @property
    def inbox_size(self) -> int:
        """Raw messages received and not yet taken into a batch."""
        return len(self._inbox)

    # -- decoding ----------------------------------------------------------------------

    def _take(self) -> list[RawMessage]:
        items, self._inbox = self._inbox, []
        if self._overflowing:
            self._overflowing = False
            log.info(
                "mqtt %s: inbox taken; reading from the broker again (%d pauses so far)",
                self.name,
                self.counters["inbox_full"],
            )
        self._read(True)
        return items

    def _route(self, topic: str) -> _Route | None:
        found: _Route | None = None
        for template, decoder in self._templates:
            ok, meter = template.match(topic)
            if ok:
                mapped = self.settings.meter_map.get(meter, meter) if meter else None
                found = _Route(decoder, mapped)
                break
        if len(self._routes) > 100_000:
            self._routes.clear()
        self._routes[topic] = found
        return found

    def _dead(self, topic: str, payload: bytes, reason: str, event: str) -> None:
        """Keep a payload that cannot be used, counted by why (`event`)."""
        if event == FailureKind.MALFORMED:
            self.malformed[topic] += 1
        self.counters[event] += 1
        if self.dead_letters.maxlen:
            letter = DeadLetter(time.time(), topic, reason[:REASON_CHARS], bytes(payload[:4096]))
            self.dead_letters.append(letter)

    def _reject(self, topic: str, payload: bytes, route: _Route, exc: Exception) -> None:
        """Keep a payload its decoder refused (or broke on); the meter it names failed."""
        if isinstance(exc, DecodeError):
            failure = ReadFailedError(FailureKind.MALFORMED, exc.reason)
            reason = exc.reason
        else:
            # A hole in the decoder: the dead letters and the counter tell about later ones.
            reason = f"decoder failed: {type(exc).__name__}: {exc}"
            failure = ReadFailedError(FailureKind.DECODE_ERROR, reason)
            if not self._decoder_failed_logged:
                self._decoder_failed_logged = True
                log.error(
                    "mqtt %s: a payload on %s broke its decoder; it is kept as a dead letter "
                    "(further ones are only counted)",
                    self.name,
                    topic,
                    exc_info=exc,
                )
        self._dead(topic, payload, reason, failure.kind)
        slot = None if route.meter is None else self._slots.get(route.meter, -1)
        if slot == -1:
            slot = self._slot(str(route.meter))
        if slot is not None:
            self._meter_status(slot).failed(failure, time.time())

    def decode(self, items: list[RawMessage]) -> ReadingBatch:
        """Turn raw messages into one batch; bad ones go to the dead letters, never abort.

        Whatever a payload does to its decoder, only that payload is lost: its rows are
        taken back and it is kept as a dead letter with the reason.
        """
        now = time.time()
        slots, routes, index = self._slots, self._routes, QUANTITY_INDEX
        # Columns as Python lists, one per quantity, sized for one reading per message
        # (the usual case) and grown when a message carries more: a list store costs a
        # fraction of a numpy element store, and one conversion at the end makes the array.
        size = len(items)
        columns = [[math.nan] * size for _ in QUANTITY_INDEX]
        ts: list[float] = []
        slot: list[int] = []
        events: list[int] = []
        r = 0
        for topic, payload, _mid, _qos, _gen in items:
            route = routes.get(topic)
            if route is None and topic not in routes:  # None: no template matches
                route = self._route(topic)
            if route is None:
                self.counters["unrouted"] += 1
                continue
            first = r
            try:
                for meter, t, quantities, mask in route.decoder(payload, route.meter, now):
                    s = slots.get(meter, -1)
                    if s == -1:
                        s = self._slot(meter)
                    if s is None:
                        self._dead(topic, payload, f"unknown meter {meter!r}", "unknown_meter")
                        continue
                    if r == size:  # a message carried several readings: grow
                        for column in columns:
                            column.extend([math.nan] * (size + 1))
                        size += size + 1
                    for q, v in quantities.items():
                        columns[index[q]][r] = v
                    ts.append(t)
                    slot.append(s)
                    events.append(mask)
                    r += 1
            except Exception as exc:  # any failure loses this payload only
                for column in columns:
                    column[first:r] = [math.nan] * (r - first)
                del ts[first:], slot[first:], events[first:]
                r = first
                self._reject(topic, payload, route, exc)
                continue
        self.counters["received"] += len(items)
        self.counters["readings"] += r
        self._update_status(Counter(slot), now)
        values = np.array(columns, dtype=np.float64)[:, :r]
        return ReadingBatch(
            ts=np.array(ts, dtype=np.float64),
            slot=np.array(slot, dtype=np.int32),
            values=np.ascontiguousarray(values),
            events=np.array(events, dtype=np.uint32),
        )

    def _slot(self, meter: str) -> int | None:
        """Look a meter up in the registry once; the answer is cached (also a miss)."""
        slot = self._registry.slot(meter) if meter in self._registry else None
        if len(self._slots) > 1_000_000:
            self._slots.clear()
        self._slots[meter] = slot
        return slot

    def _meter_status(self, slot: int) -> MeterStatus:
        status = self._seen.get(slot)
        if status is None:
            meter_id = self._registry.by_slot(slot).id
            status = self._seen[slot] = self._status.meter(meter_id, self.name)
        return status

    def _update_status(self, seen: Counter[int], now: float) -> None:
        for s, count in seen.items():
            if self._meter_status(s).succeeded(now, count):
                log.info("meter %s publishes again", self._registry.by_slot(s).id)

    def check_silence(self, now: float) -> int:
        """Mark meters silent for 3 publishing intervals as failing; return how many are."""
        limit = 3.0 * self.settings.interval_s
        silent = 0
        for s, status in self._seen.items():
            if status.last_ok is not None and now - status.last_ok > limit:
                silent += 1
                if not status.consecutive_failures:
                    failure = ReadFailedError(
                        FailureKind.SILENT, f"silent for more than {limit:g} s"
                    )
                    record_failure(status, self.counters, failure, now)
                    log.warning(
                        "meter %s (mqtt %s) went silent", self._registry.by_slot(s).id, self.name
                    )
        return silent

    # -- acknowledgement ---------------------------------------------------------------

    def _ack_ids(self, ids: list[tuple[int, int, int]]) -> None:
        """Acknowledge (mid, qos, connection) of the current connection; older ones come again."""
        client = self._client
        if client is None or not self._live or not ids:
            return
        generation = self._generation
        for mid, qos, gen in ids:
            if gen == generation:
                client.ack(mid, qos)
        client.loop_write()  # out now, not on the loop's next turn: the broker sends more

    async def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """Yield a batch every flush_s (sooner when batch_max messages wait), unacknowledged.

        Each delivery's `on_committed` sends the acknowledgements of its messages, dead
        letters included; call it once the readings are stored. A batch without a usable
        reading is delivered too (empty), so that acknowledgements keep the order of
        arrival.
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
            ids = [(mid, qos, gen) for _t, _p, mid, qos, gen in items if mid]
            yield Delivery(batch, functools.partial(self._ack_ids, ids))

    async def batches(self) -> AsyncIterator[ReadingBatch]:
        """Yield the batches of deliveries(), acknowledged once the consumer takes the next."""
        async for delivery in self.deliveries():
            if len(delivery.batch):
                yield delivery.batch  # resumed once the consumer has taken the batch
            if delivery.on_committed is not None:
                delivery.on_committed()


register_source("mqtt", MqttSourceSettings, MqttSource)
