"""API latency under load: 50 concurrent clients on the alert list and series endpoints.

Seeds a data folder (alerts and a week of one-minute readings), serves the API with uvicorn
in its own process on 127.0.0.1, and drives it from this process with httpx clients.
Prints p50/p95/p99 latency and requests/s per endpoint; each client opens its connection
with one untimed request first.

    .venv/bin/python bench/api_load.py [--clients 50] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from meterguard.model import (
    QUANTITIES,
    Alert,
    AlertEvent,
    AlertEventType,
    AlertKind,
    ReadingBatch,
    Severity,
)
from meterguard.runtime import Runtime
from meterguard.settings import Settings, load_settings

WEEK_S = 7 * 86400
N_METERS = 200
N_ALERTS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config_file(data_dir: Path, port: int) -> Path:
    path = data_dir / "meterguard.toml"
    meters = "\n".join(
        f'[[meters]]\nid = "M{i:04d}"\nservice = "3p4w"\nnominal_v = 230\n' for i in range(N_METERS)
    )
    path.write_text(f'[storage]\ndata_dir = "{data_dir}"\n[api]\nport = {port}\n{meters}')
    return path


async def _seed(settings: Settings, end: float) -> str:
    runtime = Runtime.open(settings)
    rng = np.random.default_rng(1)
    try:
        kinds = list(AlertKind)
        for n in range(N_ALERTS):
            start = end - WEEK_S + float(rng.uniform(0, WEEK_S))
            alert = Alert(
                id=f"A{n:05d}",
                meter=f"M{n % N_METERS:04d}",
                kind=kinds[n % len(kinds)],
                severity=list(Severity)[n % 4],
                start=start,
                # One active alert per meter and kind, as the store insists; older ones cleared.
                end=None if n < N_METERS else start + 3600,
                phase=1 + n % 3,
                confidence=0.8,
                estimated_kwh_lost=float(rng.uniform(0, 500)),
                summary="seeded alert",
            )
            await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=start, alert=alert))
        # A week of one-minute readings for the meter whose series the clients read.
        ts = np.arange(end - WEEK_S, end, 60.0)
        values = rng.normal(230, 2, size=(len(QUANTITIES), len(ts)))
        batch = ReadingBatch(
            ts=ts,
            slot=np.zeros(len(ts), dtype=np.int32),
            values=values,
            events=np.zeros(len(ts), dtype=np.uint32),
        )
        await runtime.series.write(batch)
        _, token = await runtime.users.create_user("bench", "viewer")
        return token
    finally:
        await runtime.close()


async def _client(
    base: str,
    headers: dict[str, str],
    path: str,
    params: dict[str, str],
    n: int,
    latencies: list[float],
    errors: list[int],
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        # One untimed request opens the connection: the figures are of steady traffic,
        # not of 50 clients connecting in the same millisecond.
        await client.get(path, params=params)
        for _ in range(n):
            t0 = time.perf_counter()
            resp = await client.get(path, params=params)
            latencies.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                errors.append(resp.status_code)


async def _wait_up(base: str) -> None:
    """Wait until the service answers /healthz; fail after 30 s."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as probe:
        while time.monotonic() < deadline:
            try:
                if (await probe.get(base + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the service did not come up within 30 s")


async def _load(
    base: str,
    headers: dict[str, str],
    name: str,
    path: str,
    params: dict[str, str],
    clients: int,
    requests: int,
) -> None:
    latencies: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(
        *(_client(base, headers, path, params, requests, latencies, errors) for _ in range(clients))
    )
    wall = time.perf_counter() - t0
    q = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    print(
        f"{name:<34} {len(latencies):>6} req  {len(latencies) / wall:>7.0f} req/s  "
        f"p50 {q[0]:6.1f} ms  p95 {q[1]:6.1f} ms  p99 {q[2]:6.1f} ms  "
        f"max {max(latencies) * 1000:6.1f} ms  errors {len(errors)}"
    )
    if errors:
        # A fast 401 or 500 is not a latency figure.
        raise SystemExit(f"{name}: {len(errors)} requests failed, e.g. HTTP {errors[0]}")


async def main() -> None:
    """Seed, serve, load each endpoint in turn, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="per client and endpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterguard-bench-") as tmp:
        data_dir = Path(tmp)
        port = _free_port()
        config = _config_file(data_dir, port)
        end = time.time()
        token = await _seed(load_settings(config), end)
        headers = {"Authorization": f"Bearer {token}"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            "run",
            "--config",
            str(config),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await _wait_up(base)
            print(
                f"{args.clients} concurrent clients x {args.requests} requests each; "
                f"{N_ALERTS} alerts, one week of 1-min readings ({WEEK_S // 60} rows)"
            )
            await _load(
                base,
                headers,
                "GET /healthz (floor: no store)",
                "/healthz",
                {},
                args.clients,
                args.requests,
            )
            await _load(
                base,
                headers,
                "GET /api/alerts?active=true",
                "/api/alerts",
                {"active": "true", "limit": "100"},
                args.clients,
                args.requests,
            )
            await _load(
                base,
                headers,
                "GET /api/alerts kind, by kWh lost",
                "/api/alerts",
                {"kind": "bypass", "sort": "kwh", "limit": "100"},
                args.clients,
                args.requests,
            )
            async with httpx.AsyncClient(base_url=base, headers=headers) as probe:
                first = await probe.get("/api/alerts", params={"sort": "severity", "limit": "100"})
            cursor = first.json().get("next_cursor")
            if cursor is None:
                raise SystemExit("the alert list gave no next_cursor for page 2")
            await _load(
                base,
                headers,
                "GET /api/alerts by severity, page 2",
                "/api/alerts",
                {"sort": "severity", "limit": "100", "cursor": cursor},
                args.clients,
                args.requests,
            )
            await _load(
                base,
                headers,
                "GET series 6 h, 500 points",
                "/api/meters/M0000/series",
                {"start": str(end - 6 * 3600), "end": str(end), "points": "500"},
                args.clients,
                args.requests,
            )
            await _load(
                base,
                headers,
                "GET series 7 d, 500 points",
                "/api/meters/M0000/series",
                {"start": str(end - WEEK_S), "end": str(end), "points": "500"},
                args.clients,
                max(1, args.requests // 4),
            )
        finally:
            proc.terminate()
            await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
