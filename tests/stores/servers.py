"""Real servers for the store tests, each on a free 127.0.0.1 port in a temp folder.

A missing binary raises (the test fails): the suite never skips a server it needs.
"""

from __future__ import annotations

import asyncio
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

import aiohttp
from aiohttp import web

from tests.conftest import free_port
from tests.tiers import require_marker


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found: install the Debian package {package!r}")
    return path


def _start_answering(
    argv: list[str], log_path: Path, url: str, timeout_s: float = 20.0
) -> subprocess.Popen[bytes]:
    """Start a server process and wait until url answers; kill it if it never does."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        _wait_http(url, timeout_s)
    except BaseException:
        _terminate(proc)
        raise
    return proc


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process: SIGTERM, then SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
        require_marker("influxdb", "a private InfluxDB")
        self._proc = _start_answering(
            [self.binary, "run", "-config", str(self.config)],
            self.folder / "influxd.log",
            f"{self.url}/ping",
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self._proc is not None:
            _terminate(self._proc)
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
        require_marker("victoriametrics", "a private VictoriaMetrics")
        self._proc = _start_answering(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.folder}/data",
                "-search.latencyOffset=1s",
                "-retentionPeriod=100y",
                # Like InfluxDB: one point per series and timestamp, however often sent.
                "-dedup.minScrapeInterval=1ms",
            ],
            self.folder / "vm.log",
            f"{self.url}/health",
        )

    def export(self, match: str) -> list[str]:
        """Force a flush and return /api/v1/export's JSON lines for a series selector."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as r:
            return [line for line in r.read().decode().splitlines() if line]

    def stop(self) -> None:
        """Stop it."""
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl), so restarting it disturbs nobody."""

    def __init__(self, folder: Path) -> None:
        require_marker("postgres", "a private PostgreSQL cluster")
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


class CountingProxy:
    """An HTTP proxy in front of an InfluxDB-like server that counts what reaches it.

    `lines_acknowledged` counts the line-protocol lines of every /write the server
    answered 204, so a chunk sent twice is counted twice (InfluxDB itself would keep one
    point per series and time and hide it). While `stalled`, requests are taken and never
    answered, like a server that hangs; `garbage` answers every request with an HTML error
    page. `requests` keeps (path, query, Authorization header) of every request.
    """

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stalled = False
        self.garbage = False
        self.lines_acknowledged = 0
        self.requests_stalled = 0
        self.requests: list[tuple[str, dict[str, str], str | None]] = []
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CountingProxy:
        self._release = asyncio.Event()
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Wake the handlers that hold stalled requests, so none is left waiting.
        assert self._release is not None
        assert self._runner is not None
        self._release.set()
        await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._release is not None
        assert self._client is not None
        body = await request.read()
        auth = request.headers.get("Authorization")
        self.requests.append((request.path, dict(request.query), auth))
        if self.stalled:
            self.requests_stalled += 1
            await self._release.wait()
            return web.Response(status=503, text="proxy closing")
        if self.garbage:
            return web.Response(status=502, text="<html>Bad Gateway</html>")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        try:
            async with self._client.request(
                request.method,
                f"{self.target_url}{request.path_qs}",
                data=body,
                headers=headers,
            ) as upstream:
                payload = await upstream.read()
                status = upstream.status
                content_type = upstream.headers.get("Content-Type", "text/plain")
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=503, text=f"upstream down: {exc}")
        if request.path.endswith("/write") and status == 204:
            self.lines_acknowledged += sum(1 for line in body.splitlines() if line.strip())
        response = web.Response(status=status, body=payload)
        response.headers["Content-Type"] = content_type
        return response


#: Request headers the proxy passes on (aiohttp sets the rest itself).
_FORWARDED = {"authorization", "content-type", "content-encoding"}
