"""MQTT ingest: meterguard's MqttSource (broker -> ReadingBatch) vs a bare paho loop.

A private mosquitto queues N readings (~200-byte JSON, 1,000 meters, QoS 1) for a
persistent session while the consumer is away; then the consumer connects and the clock
runs until all N have arrived. The bare loop is paho-mqtt with an on_message that only
json-decodes (acknowledging each message on receipt, as paho does by default): the
issue's baseline, "a bare client loop that only receives and json-decodes". meterguard
does not run on that receive path: its client (collector/mqtt.py) is a paho subclass that
reads the socket in 64 KiB chunks, only queues each PUBLISH's raw bytes and acknowledges
per batch, then decodes whole batches into columnar ReadingBatches and keeps per-meter
status. The ratio therefore compares meterguard's whole ingest with stock paho + json,
not two implementations of the same receive loop. Both runs alternate twice; the best of
each is compared.

usage: python bench/mqtt_ingest.py [-n 200000] [-m 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import platform
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.mqtt import MqttSource
from meterguard.model import Meter, MeterRegistry
from meterguard.settings import MqttSourceSettings
from meterguard.status import StatusBoard

TOPIC = "bench/meters/{meter}/reading"


def messages(n: int, m: int) -> list[tuple[bytes, bytes]]:
    """Return n (topic, payload) readings of m meters, ~200-byte JSON each."""
    rng = random.Random(1)
    out = []
    for k in range(n):
        meter = f"m{k % m:05d}"
        ts = 1_767_225_600 + 60 * (k // m)
        body = {"meter": meter, "ts": ts}
        for q in ("v1", "v2", "v3"):
            body[q] = round(rng.uniform(225, 240), 1)
        for q in ("i1", "i2", "i3", "in"):
            body[q] = round(rng.uniform(0, 20), 2)
        for q in ("p1", "p2", "p3"):
            body[q] = round(rng.uniform(0, 4000), 1)
        payload = json.dumps(body, separators=(",", ":")).encode()
        out.append((TOPIC.format(meter=meter).encode(), payload))
    return out


def _packet(first: int, body: bytes) -> bytes:
    n, length = len(body), b""
    while True:
        n, digit = divmod(n, 128)
        length += bytes([digit | (128 if n else 0)])
        if not n:
            return bytes([first]) + length + body


def publish(port: int, msgs: list[tuple[bytes, bytes]]) -> None:
    """Publish at QoS 1 on a raw socket (paho's publish loop is slower than the consumers)."""
    sock = socket.create_connection(("127.0.0.1", port))
    client_id = b"bench-publisher"
    connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    sock.sendall(_packet(0x10, connect))
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    acked = 0
    done = threading.Event()

    def acks() -> None:
        nonlocal acked
        buf = b""
        while acked < len(msgs):
            buf += sock.recv(65536)
            whole = len(buf) - len(buf) % 4
            acked += whole // 4
            buf = buf[whole:]
        done.set()

    threading.Thread(target=acks, daemon=True).start()
    packets = [
        _packet(0x32, len(t).to_bytes(2, "big") + t + (k % 65535 + 1).to_bytes(2, "big") + p)
        for k, (t, p) in enumerate(msgs)
    ]
    for k in range(0, len(packets), 500):
        while k - acked > 30_000:
            time.sleep(0.001)
        sock.sendall(b"".join(packets[k : k + 500]))
    done.wait(120)
    sock.sendall(b"\xe0\x00")
    sock.close()


def session(port: int, client_id: str, keep: bool) -> None:
    """Start a fresh session for client_id (subscribed, kept after disconnect) or end it.

    Run before each timed run so that the consumer's queue holds exactly the stream
    published next, and after it so that the next stream is not queued for it as well.
    """
    subscribed = threading.Event()
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_subscribe = lambda *a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600 if keep else 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    if keep:
        client.subscribe("bench/meters/+/reading", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def bare(port: int, n: int) -> float:
    """Return seconds for a bare paho client to receive and json-decode n queued messages."""
    got = 0
    finished = threading.Event()

    def on_message(c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        nonlocal got
        json.loads(msg.payload)
        got += 1
        if got >= n:
            finished.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    started = time.perf_counter()
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    if not finished.wait(300):
        raise RuntimeError(f"bare client got {got} of {n}")
    seconds = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return seconds


async def meterguard(port: int, n: int, m: int) -> float:
    """Return seconds for MqttSource to deliver n queued readings as batches."""
    registry = MeterRegistry(Meter(id=f"m{k:05d}", service="3p4w", nominal_v=230) for k in range(m))
    settings = MqttSourceSettings.model_validate(
        {
            "name": "bench",
            "port": port,
            "client_id": "bench-meterguard",
            "subscriptions": [{"topic": TOPIC, "format": "meterguard"}],
        }
    )
    source = MqttSource(settings, registry, StatusBoard())
    started = time.perf_counter()
    async with source:
        rows = 0
        async for batch in source.batches():
            rows += len(batch)
            if rows >= n:
                break
        seconds = time.perf_counter() - started
    if source.counters["malformed"]:
        raise RuntimeError("malformed readings in the benchmark stream")
    if rows != n:
        raise RuntimeError(f"meterguard delivered {rows} readings, expected {n}")
    return seconds


def main() -> None:
    """Queue the stream for each consumer in turn, time them and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("-m", type=int, default=1000)
    a = ap.parse_args()
    msgs = messages(a.n, a.m)
    tmp = Path(tempfile.mkdtemp(prefix="mg-mqtt-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    (tmp / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "persistence false\nmax_queued_messages 0\nmax_queued_bytes 0\nlog_dest none\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")])
    time.sleep(0.5)
    results: dict[str, list[float]] = {"bare": [], "meterguard": []}
    try:
        for _ in range(2):
            for name in ("bare", "meterguard"):
                client_id = f"bench-{name}"
                session(port, client_id, keep=True)  # subscribed, then away
                publish(port, msgs)  # queued for the session while the consumer is away
                if name == "bare":
                    seconds = bare(port, a.n)
                else:
                    seconds = asyncio.run(meterguard(port, a.n, a.m))
                session(port, client_id, keep=False)  # not queued the next stream
                rate = a.n / seconds
                results[name].append(rate)
                print(f"{name:10s} {rate:8.0f} readings/s ({seconds:.2f} s)", flush=True)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    b, m = max(results["bare"]), max(results["meterguard"])
    print(
        f"\n{platform.node()} python {platform.python_version()}, {a.n} readings, {a.m} meters, "
        f"QoS 1, best of 2:\nbare paho + json.loads {b:.0f}/s, meterguard MqttSource -> "
        f"ReadingBatch {m:.0f}/s, ratio {m / b:.2f}"
    )


if __name__ == "__main__":
    main()
