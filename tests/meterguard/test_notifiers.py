"""Alert events to a real webhook receiver and to the local Mosquitto broker."""

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.notifiers import SIGNATURE_HEADER, build_notifiers
from meterguard.notify_settings import MqttNotifySettings, NotifySettings, WebhookSettings
from tests.conftest import free_port


def _event(n: int, kind: AlertEventType = AlertEventType.OPEN) -> AlertEvent:
    alert = Alert(
        id=f"M{n}-reversal-100",
        meter=f"M{n}",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        raised=1_767_225_660,
        phase=1,
        confidence=0.9,
        estimated_kwh_lost=1.5,
        summary="phase 1 reversed",
    )
    return AlertEvent(type=kind, ts=1_767_225_660, alert=alert)


class Receiver:
    """A webhook receiver that refuses the first `fail_first` requests with 503."""

    def __init__(self, port: int, fail_first: int = 0) -> None:
        self.bodies: list[tuple[bytes, str | None]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                if outer.requests <= fail_first:
                    self.send_response(503)
                else:
                    outer.bodies.append((body, self.headers.get(SIGNATURE_HEADER)))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _until(predicate: Callable[[], bool], within_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_webhook_retries_until_delivered_in_order_and_signed() -> None:
    port = free_port()
    receiver = Receiver(port, fail_first=2)
    [notifier] = build_notifiers(
        NotifySettings(
            webhook=WebhookSettings(url=f"http://127.0.0.1:{port}/hook", secret="s3cret")
        )
    )
    task = asyncio.create_task(notifier.run())
    try:
        for n in range(3):
            notifier.offer(_event(n))
        await _until(lambda: notifier.delivered == 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        receiver.close()
    assert notifier.failures == 2
    assert [json.loads(b)["alert"]["meter"] for b, _ in receiver.bodies] == ["M0", "M1", "M2"]
    body, signature = receiver.bodies[0]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature == expected
    doc = json.loads(body)
    assert doc["type"] == "open"
    assert doc["alert"]["start"] == "2026-01-01T00:00:00Z"
    assert doc["alert"]["raised"] == "2026-01-01T00:01:00Z"


async def test_webhook_down_at_first_then_up_loses_nothing() -> None:
    port = free_port()
    [notifier] = build_notifiers(
        NotifySettings(webhook=WebhookSettings(url=f"http://127.0.0.1:{port}/", timeout_s=1))
    )
    task = asyncio.create_task(notifier.run())
    notifier.offer(_event(1))
    await _until(lambda: notifier.failures >= 2)
    receiver = Receiver(port)
    try:
        await _until(lambda: notifier.delivered == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        receiver.close()
    assert len(receiver.bodies) == 1
    assert notifier.dropped == 0


async def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    [notifier] = build_notifiers(
        NotifySettings(webhook=WebhookSettings(url="http://127.0.0.1:9/"), queue_events=2)
    )
    for n in range(5):
        notifier.offer(_event(n))
    assert notifier.backlog() == 2
    assert notifier.dropped == 3
    await notifier.sender.close()


@pytest.fixture
def subscriber() -> Iterator[tuple[str, list[mqtt.MQTTMessage]]]:
    prefix = f"meterguard-test-{uuid.uuid4().hex[:8]}"
    received: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, msg: received.append(msg)
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", 1883)  # the machine's Mosquitto; .ci/run makes sure it runs
    client.subscribe(f"{prefix}/#", qos=1)
    client.loop_start()
    assert subscribed.wait(10), "no SUBACK from Mosquitto on 127.0.0.1:1883"
    yield prefix, received
    client.loop_stop()
    client.disconnect()


@pytest.mark.mqtt
async def test_mqtt_topic_gets_every_event(subscriber: tuple[str, list[mqtt.MQTTMessage]]) -> None:
    prefix, received = subscriber
    [notifier] = build_notifiers(NotifySettings(mqtt=MqttNotifySettings(topic_prefix=prefix)))
    task = asyncio.create_task(notifier.run())
    try:
        notifier.offer(_event(7))
        notifier.offer(_event(7, AlertEventType.CLEAR))
        await _until(lambda: len(received) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [m.topic for m in received] == [f"{prefix}/alerts/reversal/M7"] * 2
    assert [json.loads(m.payload)["type"] for m in received] == ["open", "clear"]
    assert notifier.delivered == 2
