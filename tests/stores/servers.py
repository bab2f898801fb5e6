"""Real servers for the store tests, each on a free 127.0.0.1 port in a temp folder.

A missing binary raises (the test fails): the suite never skips a server it needs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import free_port


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found: install the Debian package {package!r}")
    return path


def _wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s} s") from exc
            time.sleep(0.1)


class InfluxServer:
    """InfluxDB 1.x (`influxd run`) with its config, data and WAL under one folder."""

    def __init__(self, folder: Path) -> None:
        self.binary = _require("influxd", "influxdb")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "influxdb.conf"
        self.config.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{folder}/meta"
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
""",
            encoding="utf-8",
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until /ping answers."""
        log = (self.folder / "influxd.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "run", "-config", str(self.config)], stdout=log, stderr=log
        )
        _wait_http(f"{self.url}/ping")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


class VictoriaMetrics:
    """VictoriaMetrics single node: InfluxDB line protocol on /write and /api/v2/write."""

    def __init__(self, folder: Path) -> None:
        self.binary = _require("victoria-metrics", "victoria-metrics")
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until /health answers."""
        log = (self.folder / "vm.log").open("ab")
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.folder}/data",
                "-search.latencyOffset=1s",
                "-retentionPeriod=100y",
                # Like InfluxDB: one point per series and timestamp, however often sent.
                "-dedup.minScrapeInterval=1ms",
            ],
            stdout=log,
            stderr=log,
        )
        _wait_http(f"{self.url}/health")

    def export(self, match: str) -> list[str]:
        """Force a flush and return /api/v1/export's JSON lines for a series selector."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as r:
            return [line for line in r.read().decode().splitlines() if line]

    def stop(self) -> None:
        """Stop it."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl), so restarting it disturbs nobody."""

    def __init__(self, folder: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries not found (Debian package postgresql)")
        self.bin = bins[-1].parent
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        folder.chmod(0o777)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"])

    def _run(self, argv: list[str]) -> None:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            subprocess.run(
                argv,
                check=True,
                capture_output=True,
                user=pw.pw_uid,
                group=pw.pw_gid,
                cwd=self.folder,
            )
        else:
            subprocess.run(argv, check=True, capture_output=True, cwd=self.folder)

    def start(self) -> None:
        """Start the cluster and wait for it (pg_ctl -w)."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.folder / "pg.log"),
                "-w",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])
