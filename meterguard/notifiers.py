"""Alert events pushed to other systems: a webhook and an MQTT topic, retried, never blocking."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from typing import Any, Protocol

import httpx

from meterguard.model import AlertEvent
from meterguard.notify_settings import MqttNotifySettings, NotifySettings, WebhookSettings
from meterguard.timefmt import rfc3339

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Meterguard-Signature"


def event_payload(event: AlertEvent) -> dict[str, Any]:
    """Return the JSON document sent for an event (the alert as the API shows it)."""
    alert = event.alert
    return {
        "type": event.type.value,
        "ts": rfc3339(event.ts),
        "alert": {
            "id": alert.id,
            "meter": alert.meter,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "active": alert.active,
            "start": rfc3339(alert.start),
            "raised": None if alert.raised is None else rfc3339(alert.raised),
            "end": None if alert.end is None else rfc3339(alert.end),
            "phase": alert.phase,
            "confidence": alert.confidence,
            "estimated_kwh_lost": alert.estimated_kwh_lost,
            "summary": alert.summary,
        },
    }


def sign(secret: str, body: bytes) -> str:
    """Return the signature header value for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Sender(Protocol):
    """Delivers one event or raises."""

    name: str

    async def send(self, event: AlertEvent) -> None:
        """Deliver one event; raise on any failure."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class WebhookSender:
    """POSTs events; any status but 2xx is a failure to retry."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)

    async def send(self, event: AlertEvent) -> None:
        """POST the event; a non-2xx answer raises."""
        body = json.dumps(event_payload(event)).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = sign(self.settings.secret, body)
        response = await self._client.post(self.settings.url, content=body, headers=headers)
        response.raise_for_status()

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()


class MqttSender:
    """Publishes events at QoS 1, connecting on first use and again after a failure."""

    name = "mqtt"

    def __init__(self, settings: MqttNotifySettings) -> None:
        self.settings = settings
        self._client: Any = None

    async def _connect(self) -> Any:
        import aiomqtt

        client = aiomqtt.Client(
            self.settings.host,
            self.settings.port,
            username=self.settings.username,
            password=self.settings.password,
            timeout=10,
        )
        await client.__aenter__()
        return client

    async def send(self, event: AlertEvent) -> None:
        """Publish the event at QoS 1, connecting first if needed."""
        if self._client is None:
            self._client = await self._connect()
        alert = event.alert
        topic = f"{self.settings.topic_prefix}/alerts/{alert.kind.value}/{alert.meter}"
        try:
            await self._client.publish(topic, json.dumps(event_payload(event)), qos=1)
        except Exception:
            await self.close()
            raise

    async def close(self) -> None:
        """Disconnect from the broker, if connected."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except Exception as exc:  # the link is already broken; nothing left to close
                log.debug("closing the MQTT notifier link: %s", exc)


class Notifier:
    """A bounded queue in front of one sender, drained by a task with retries and backoff."""

    def __init__(self, sender: Sender, queue_events: int, max_attempts: int) -> None:
        self.sender = sender
        self.max_attempts = max_attempts
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue(queue_events)
        self.delivered = 0
        self.dropped = 0
        self.failures = 0

    def offer(self, event: AlertEvent) -> None:
        """Queue an event; a full queue drops it (counted, logged) rather than stall alerts."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "%s notifier is %d events behind; dropped %s %s",
                self.sender.name,
                self._queue.qsize(),
                event.type.value,
                event.alert.id,
            )

    def backlog(self) -> int:
        """Return how many events wait for delivery."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Deliver queued events in order until cancelled."""
        try:
            while True:
                event = await self._queue.get()
                await self._deliver(event)
        finally:
            await self.sender.close()

    async def _deliver(self, event: AlertEvent) -> None:
        for attempt in range(self.max_attempts):
            try:
                await self.sender.send(event)
            except Exception as exc:  # any failure of the receiver is retried the same way
                self.failures += 1
                if attempt == 0:
                    log.warning("%s notifier failed (%s); retrying", self.sender.name, exc)
                await asyncio.sleep(min(30.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
                continue
            self.delivered += 1
            if attempt:
                log.info(
                    "%s notifier delivered again after %d attempts", self.sender.name, attempt + 1
                )
            return
        self.dropped += 1
        log.error(
            "%s notifier gave up on %s %s after %d attempts",
            self.sender.name,
            event.type.value,
            event.alert.id,
            self.max_attempts,
        )


def build_notifiers(settings: NotifySettings) -> list[Notifier]:
    """Build a notifier for each configured receiver."""
    senders: list[Sender] = []
    if settings.webhook is not None:
        senders.append(WebhookSender(settings.webhook))
    if settings.mqtt is not None:
        senders.append(MqttSender(settings.mqtt))
    return [Notifier(s, settings.queue_events, settings.max_attempts) for s in senders]
