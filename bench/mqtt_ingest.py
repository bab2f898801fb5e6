"""MQTT ingest: meterguard's source in the service pipeline against a bare loop.

A private mosquitto queues N readings (~200-byte JSON, 1,000 meters, QoS 1) for a
persistent session while the consumer is away; then the consumer connects and the clock
runs until all N have been taken in. Three consumers, all on the same client library
(paho-mqtt) and the same JSON decoder (orjson):

- `bare`: paho's own network loop (`loop_start`) with an on_message that only decodes
  the payload with orjson, acknowledging each message on receipt (paho's default): what
  a plain consumer of this library and decoder does, and a reference for both;
- `receipt`: meterguard's MQTT source (collector/mqtt.py: paho driven by the event loop
  through its public socket hooks, manual acknowledgement) in the whole service pipeline
  (validation, engine, embedded SQLite series store), acknowledging each batch as soon
  as it is decoded, as a consumer that may lose readings would;
- `committed`: the same, acknowledging each batch only once the series store has
  committed it, as the service does (a crash loses nothing the broker accepted).

The clock stops when the engine has taken the last reading (`committed` also waits for
the commits that release the broker's next messages). The detectors are switched off:
their cost is not what is measured here (bench/engine.py). Runs alternate `--rounds`
times; the best of each is compared. Every consumer speaks the MQTT source's default
protocol (3.1.1); `--protocol 5` runs them all on MQTT 5 instead (paho parses the
properties of every MQTT 5 PUBLISH, which costs it CPU).

usage: python bench/mqtt_ingest.py [-n 200000] [-m 1000] [--rounds 2] [--protocol 3.1.1|5]
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
from collections.abc import AsyncGenerator
from pathlib import Path

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.base import Delivery
from collector.mqtt import MqttSource, MqttSourceSettings
from detectors.base import DETECTORS
from detectors.engine import load_detector_modules
from meterguard.model import Meter
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from service.supervisor import Service

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


def session(port: int, client_id: str, keep: bool, protocol: str) -> None:
    """Start a fresh session for client_id (subscribed, kept after disconnect) or end it.

    Run before each timed run so that the consumer's queue holds exactly the stream
    published next, and after it so that the next stream is not queued for it as well.
    """
    subscribed = threading.Event()
    client = _client(client_id, protocol, clean=not keep)
    client.on_subscribe = lambda *a: subscribed.set()
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600 if keep else 0
        client.connect("127.0.0.1", port, clean_start=True, properties=props)
    else:
        client.connect("127.0.0.1", port)
    client.loop_start()
    if keep:
        client.subscribe("bench/meters/+/reading", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK")
    client.disconnect()
    client.loop_stop()


def _client(client_id: str, protocol: str, clean: bool = False) -> paho.Client:
    """Return a paho client of the protocol; a 3.1.1 one keeps its session unless `clean`."""
    if protocol == "5":
        return paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
        clean_session=clean,
    )


def bare(port: int, n: int, protocol: str) -> tuple[float, float]:
    """Return wall and CPU seconds for paho's own loop + orjson to take in n messages."""
    got = 0
    finished = threading.Event()

    def on_message(c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        nonlocal got
        orjson.loads(msg.payload)
        got += 1
        if got >= n:
            finished.set()

    client = _client("bench-bare", protocol)
    client.on_message = on_message
    started, cpu = time.perf_counter(), time.process_time()
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        client.connect("127.0.0.1", port)
    client.loop_start()
    if not finished.wait(300):
        raise RuntimeError(f"bare client got {got} of {n}")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    return seconds, cpu


class _AckOnReceipt(MqttSource):
    """meterguard's source, acknowledging each batch as soon as it is decoded."""

    async def deliveries(self) -> AsyncGenerator[Delivery, None]:
        """Yield the batches with nothing left to acknowledge."""
        async for delivery in super().deliveries():
            if delivery.on_committed is not None:
                delivery.on_committed()
            yield Delivery(delivery.batch)


async def meterguard(
    port: int, n: int, m: int, mode: str, data_dir: Path, protocol: str
) -> tuple[float, float]:
    """Return wall and CPU seconds for the service pipeline to take in n queued readings."""
    meters = [Meter(id=f"m{k:05d}", service="3p4w", nominal_v=230) for k in range(m)]
    source_settings = MqttSourceSettings.model_validate(
        {
            "name": "bench",
            "port": port,
            "client_id": f"bench-{mode}",
            "protocol": protocol,
            "subscriptions": [{"topic": TOPIC, "format": "meterguard"}],
        }
    )
    load_detector_modules()
    settings = Settings(
        storage=StorageSettings(data_dir=data_dir),
        api=ApiSettings(enabled=False),
        meters=meters,
        detectors={name: {"enabled": False} for name in DETECTORS},
    )
    runtime = Runtime.open(settings)
    kind = _AckOnReceipt if mode == "receipt" else MqttSource
    source = kind(source_settings, runtime.registry, runtime.status)
    service = Service(runtime, sources=[source])
    started, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(service.run())
    try:
        while runtime.counters.readings_in < n:
            if task.done():
                task.result()
            await asyncio.sleep(0.002)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        service.request_stop()
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        await runtime.close()
    if source.counters["malformed"]:
        raise RuntimeError("malformed readings in the benchmark stream")
    if runtime.counters.readings_in != n:
        raise RuntimeError(f"{mode} took in {runtime.counters.readings_in} readings, not {n}")
    return seconds, cpu


def main() -> None:
    """Queue the stream for each consumer in turn, time them and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("-m", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--consumers", default="bare,receipt,committed", help="comma-separated, in run order"
    )
    ap.add_argument(
        "--protocol",
        choices=["3.1.1", "5"],
        default=MqttSourceSettings.model_fields["protocol"].default,
        help="MQTT protocol of every consumer (default: the MQTT source's)",
    )
    a = ap.parse_args()
    names = a.consumers.split(",")
    msgs = messages(a.n, a.m)
    tmp = Path(tempfile.mkdtemp(prefix="mg-mqtt-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    # Finite max_inflight_messages as deploy/mosquitto.conf sets it: with 0, Mosquitto
    # ignores the client's Receive Maximum.
    (tmp / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "persistence false\nmax_queued_messages 0\nmax_queued_bytes 0\n"
        "max_inflight_messages 10000\nlog_dest none\n"
    )
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp / "mosquitto.conf")])
    time.sleep(0.5)
    results: dict[str, list[float]] = {name: [] for name in names}
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    try:
        for r in range(a.rounds):
            for name in names:
                client_id = f"bench-{name}"
                session(port, client_id, keep=True, protocol=a.protocol)  # subscribed, then away
                publish(port, msgs)  # queued for the session while the consumer is away
                if name == "bare":
                    seconds, cpu = bare(port, a.n, a.protocol)
                else:
                    data_dir = tmp / f"{name}-{r}"
                    data_dir.mkdir()
                    seconds, cpu = asyncio.run(
                        meterguard(port, a.n, a.m, name, data_dir, a.protocol)
                    )
                    shutil.rmtree(data_dir, ignore_errors=True)
                session(
                    port, client_id, keep=False, protocol=a.protocol
                )  # not queued the next stream
                rate = a.n / seconds
                results[name].append(rate)
                cpu_us[name].append(cpu / a.n * 1e6)
                print(
                    f"{name:10s} {rate:8.0f} readings/s ({seconds:.2f} s), "
                    f"{cpu / a.n * 1e6:.1f} us CPU per reading",
                    flush=True,
                )
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    best = {name: max(rates) for name, rates in results.items()}
    print(
        f"\n{platform.node()} python {platform.python_version()}, {a.n} readings, {a.m} meters, "
        f"QoS 1, MQTT {a.protocol}, best of {a.rounds}:"
    )
    for name, rate in best.items():
        print(f"  {name:10s} {rate:8.0f} readings/s, {min(cpu_us[name]):.1f} us CPU per reading")
    for name in ("receipt", "committed"):
        if name in best and "bare" in best:
            print(f"{name} / bare: {best[name] / best['bare']:.2f}")


if __name__ == "__main__":
    main()
