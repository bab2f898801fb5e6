"""A private Mosquitto per test that needs one: own port, own temp config, restartable."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.tiers import require_marker


class Broker:
    """A mosquitto process on 127.0.0.1 with persistence on and unbounded queues."""

    def __init__(self, workdir: Path, head: str = "", tail: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # max_queued_messages 0: a subscriber that falls behind (or is away) loses nothing;
        # persistence: queued QoS 1 messages survive a broker restart.
        self.config.write_text(
            head + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            # Finite (deploy/mosquitto.conf): 0 would make Mosquitto ignore Receive Maximum.
            "max_inflight_messages 10000\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n" + tail
        )

    def start(self) -> None:
        """Start mosquitto and wait until it accepts connections."""
        require_marker("mqtt", "a private Mosquitto")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.config)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        log = self.log.read_text() if self.log.exists() else ""
        raise RuntimeError(f"mosquitto did not start on {self.port}: {log}")

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM: it saves its persistence file on the way out)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence file."""
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private mosquitto for one test (never the system one)."""
    broker = Broker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
