"""Durable acknowledgement: kill -9 of a service process loses no reading the broker accepted.

The service acknowledges an MQTT batch only once the series store has committed it, so
whatever a killed process had received but not stored comes again to the next one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simulators.meter import SimulatedMeter
from simulators.mqtt_publisher import MqttPublisher
from tests.collector.conftest import Broker
from tests.collector.mqtt_service_proc import TOPIC, settings

METERS = 20
ROUNDS = 300
N = METERS * ROUNDS


def _spawn(port: int, data_dir: Path, log: Path, protocol: str) -> subprocess.Popen[str]:
    args = [str(port), str(data_dir), str(METERS), protocol]
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.collector.mqtt_service_proc", *args],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            cwd=Path(__file__).parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_subscribed(proc: subprocess.Popen[str], log: Path) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the process prints it, or dies and closes stdout
    assert line.strip() == "subscribed", log.read_text()[-3000:]


def _stored(data_dir: Path) -> int:
    """Readings committed to the series store, read as another process would."""
    path = data_dir / "series.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


# The session that keeps what the killed process left unacknowledged differs: clean
# session off (MQTT 3.1.1) or a session expiry (MQTT 5).
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_kill_9_loses_no_reading_the_broker_accepted(
    broker: Broker, tmp_path: Path, protocol: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    log = tmp_path / "service.log"
    meters = settings(broker.port, data_dir, METERS).meters
    sims = [SimulatedMeter(meter=m, seed=k) for k, m in enumerate(meters)]
    t0 = float(int(time.time()) - 3 * 86400)
    accepted = threading.Event()

    def publish() -> None:
        # publish_round returns once the broker has acknowledged every message of a round.
        with MqttPublisher(sims, port=broker.port, topic=TOPIC, client_id="durable-pub") as pub:
            for k in range(ROUNDS):
                pub.publish_round(t0 + 60 * k)
        accepted.set()

    first = _spawn(broker.port, data_dir, log, protocol)
    try:
        _wait_subscribed(first, log)
        publisher = threading.Thread(target=publish)
        publisher.start()
        deadline = time.monotonic() + 60
        while _stored(data_dir) < N // 5:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
        # Mid-stream and between two of the store's own timed commits (every second): what
        # was received but not yet committed must not have been acknowledged.
        time.sleep(0.4)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    at_kill = _stored(data_dir)
    publisher.join(120)
    assert accepted.is_set(), "the broker did not accept every reading"
    assert at_kill < N, "the kill came after everything was stored: make the stream longer"

    second = _spawn(broker.port, data_dir, log, protocol)
    try:
        _wait_subscribed(second, log)
        deadline = time.monotonic() + 60
        while _stored(data_dir) < N:
            assert time.monotonic() < deadline, (_stored(data_dir), log.read_text()[-3000:])
            time.sleep(0.05)
        time.sleep(0.5)  # anything more would be a reading twice (or one made up)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert second.returncode == 0, log.read_text()[-3000:]
    with contextlib.closing(sqlite3.connect(data_dir / "series.sqlite")) as db:
        rows = db.execute("SELECT meter, ts FROM readings").fetchall()
    assert len(rows) == N
    assert {(m, t) for m, t in rows} == {
        (meter.id, t0 + 60 * k) for meter in meters for k in range(ROUNDS)
    }
