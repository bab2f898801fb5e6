"""Scale-out: ingest, N workers and NATS JetStream on this machine, one worker killed mid-run.

A simulated fleet (`meterguard simulate --mix`) is replayed once by the single-process
engine (`service/replay.py`): the reference alerts. Then a private nats-server (JetStream,
on a free 127.0.0.1 port) and a fresh PostgreSQL database are started, N `meterguard
worker` processes take the partitions, and `meterguard ingest --readings` publishes the
same readings. With --kill-one, the first worker is killed (SIGKILL) once the workers have
judged 40 % of the readings; the others take its partitions over. The clock runs from
the first publish until every partition has been judged to its last message.

Compared, per alert: (meter, kind, phase, start) against the reference. `lost` counts
reference alerts the run has not; `duplicated` counts alerts the run has that the
reference has not, plus alerts opened more than once or changed after their clear in
the database's history. `takeover_s` runs from the kill until the last of the dead
worker's partitions has been replayed by its new owner.

usage: python bench/scale_out.py [--workers 3] [--kill-one] [--meters 2000] [--days 1]
                                 [--partitions 12] [--ttl 6] [--seed 7]

The last line printed is one JSON object: workers, alerts_identical, lost, duplicated,
takeover_s, readings_per_s (and a few more figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats

ROOT = Path(__file__).resolve().parents[1]
#: The machine's PostgreSQL (trust auth from 127.0.0.1), as the tests use it.
PG_DSN = os.environ.get("MG_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
KILL_AT_SHARE = 0.4


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nats_server(store: Path) -> Iterator[str]:
    """Run a private nats-server with JetStream on 127.0.0.1; yield its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("nats-server did not start")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """Create an empty database on the machine's PostgreSQL; yield its SQLAlchemy URL."""
    name = f"meterguard_scale_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def simulate(out: Path, meters: int, days: float, seed: int) -> None:
    """Write a simulated fleet with incidents (meters.csv, readings.csv) to `out`."""
    subprocess.run(
        [
            *(sys.executable, "-m", "service.cli", "simulate", "--mix", str(seed)),
            *("--meters", str(meters), "--days", str(days), "--out", str(out)),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


AlertKey = tuple[str, str, int | None, float]


def reference_alerts(data: Path) -> set[AlertKey]:
    """Return the alerts of the single-process replay of `data`."""
    from meterguard.timeparse import parse_time
    from service.replay import replay

    out = io.StringIO()
    replay(data, out)
    keys: set[AlertKey] = set()
    for line in out.getvalue().splitlines():
        a = json.loads(line)
        keys.add((a["meter"], a["kind"], a["phase"], parse_time(a["start"])))
    return keys


def write_config(
    path: Path,
    data: Path,
    nats_url: str,
    db_url: str,
    partitions: int,
    ttl: float,
    snapshot_every_s: float = 0.0,
) -> Path:
    """Write the config every ingest and worker of the run shares."""
    path.write_text(
        "\n".join(
            [
                'log_level = "WARNING"',
                f'meters_csv = "{data / "meters.csv"}"',
                "[storage]",
                f'data_dir = "{path.parent / "data"}"',
                f'alert_db_url = "{db_url}"',
                "[scale]",
                f'nats_url = "{nats_url}"',
                f"partitions = {partitions}",
                f"lease_ttl_s = {ttl}",
                f"snapshot_every_s = {snapshot_every_s}",
            ]
        )
        + "\n"
    )
    return path


@dataclass
class WorkerProc:
    """A worker process and the JSON lines it has printed."""

    name: str
    proc: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                record = json.loads(raw)
                with self.lock:
                    self.lines.append(record)
                    if record.get("event") == "status":
                        self.status = record


def start_worker(config: Path, name: str, log: Path) -> WorkerProc:
    """Start `meterguard worker` named `name`; its JSON lines are read on a thread."""
    env = {**os.environ, "MG_SCALE__WORKER": name}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env=env,
        cwd=ROOT,
    )
    worker = WorkerProc(name, proc)
    threading.Thread(target=worker.read, daemon=True).start()
    return worker


def owned(workers: list[WorkerProc]) -> dict[int, tuple[str, int, int]]:
    """Return, per partition, its owner and where it is: (worker, seq, readings)."""
    out: dict[int, tuple[str, int, int]] = {}
    for w in workers:
        if w.proc.poll() is not None:
            continue
        with w.lock:
            parts = w.status.get("partitions", {})
        for p, (seq, readings) in parts.items():
            out[int(p)] = (w.name, int(seq), int(readings))
    return out


async def last_seqs(nats_url: str, partitions: int) -> dict[int, int]:
    """Return each partition's last stream sequence (0: empty)."""
    from meterguard.settings import ScaleSettings
    from service.scale.stream import last_sequence

    settings = ScaleSettings(nats_url=nats_url, partitions=partitions)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        return {p: await last_sequence(js, settings, p) for p in range(partitions)}
    finally:
        await nc.close()


async def run_alerts(db_url: str) -> tuple[set[AlertKey], int]:
    """Return the alerts in the database and how many were opened twice or changed after a clear."""
    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT meter, kind, phase, start FROM alerts")
        again = await conn.fetchval(
            """
            SELECT count(*) FROM (
              SELECT alert_id FROM alert_history GROUP BY alert_id
              HAVING sum(CASE WHEN type = 'open' THEN 1 ELSE 0 END) > 1
                  OR max(CASE WHEN type = 'clear' THEN data_ts END)
                     < max(CASE WHEN type <> 'clear' THEN data_ts END)
            ) AS twice
            """
        )
    finally:
        await conn.close()
    keys = {(r["meter"], r["kind"], r["phase"], float(r["start"])) for r in rows}
    return keys, int(again)


def regained_at(
    survivors: list[WorkerProc], parts: set[int], reached: dict[int, int], killed_at: float
) -> float | None:
    """Return seconds from the kill until the dead worker's partitions were judged as far again.

    `reached` is how far the dead worker had judged each (its last status line).
    """
    when: dict[int, float] = {}
    for w in survivors:
        with w.lock:
            lines = list(w.lines)
        for line in lines:
            if line.get("event") != "status" or line["t"] < killed_at:
                continue
            for p, (seq, _n) in line["partitions"].items():
                part = int(p)
                if part in parts and seq >= reached.get(part, 0) and part not in when:
                    when[part] = line["t"]
    return max(when.values()) - killed_at if len(when) == len(parts) else None


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll `predicate` every 0.2 s until it holds; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


@dataclass
class Outcome:
    """What one scale-out run measured."""

    workers: int
    alerts_identical: bool
    lost: int
    duplicated: int
    takeover_s: float | None
    readings_per_s: float
    readings: int
    reference_alerts: int
    run_alerts: int
    seconds: float
    cpu_us_per_reading: dict[str, float]
    max_rss_mb: dict[str, float]
    #: The dead worker's partitions that their new owner loaded from a snapshot.
    taken_from_snapshots: int = 0
    #: From the kill until the survivors had judged each of the dead worker's partitions
    #: as far as it had (its last status line).
    regained_s: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "alerts_identical": self.alerts_identical,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "takeover_s": None if self.takeover_s is None else round(self.takeover_s, 1),
            "readings_per_s": round(self.readings_per_s),
            "readings": self.readings,
            "alerts": self.reference_alerts,
            "seconds": round(self.seconds, 1),
            "cpu_us_per_reading": self.cpu_us_per_reading,
            "max_rss_mb": self.max_rss_mb,
            "taken_from_snapshots": self.taken_from_snapshots,
            "regained_s": None if self.regained_s is None else round(self.regained_s, 1),
        }


def scale_out(
    data: Path,
    workdir: Path,
    workers: int,
    kill_one: bool,
    partitions: int,
    ttl: float,
    timeout: float = 600.0,
    nats_url: str | None = None,
    snapshot_every_s: float = 0.0,
    rate: float | None = None,
) -> Outcome:
    """Run ingest + workers over `data` (meters.csv, readings.csv) and compare the alerts.

    `nats_url`: a server to use (its stream must be new); None starts a private one.
    """
    reference = reference_alerts(data)
    with contextlib.ExitStack() as stack:
        if nats_url is None:
            nats_url = stack.enter_context(nats_server(workdir / "nats"))
        db_url = stack.enter_context(pg_database())
        config = write_config(
            workdir / "scale.toml", data, nats_url, db_url, partitions, ttl, snapshot_every_s
        )
        procs: list[WorkerProc] = []
        try:
            for i in range(workers):
                procs.append(start_worker(config, f"w{i + 1}", workdir / f"w{i + 1}.log"))
                # One at a time: each migrates or sees the schema, and takes its share.
                wait_for(lambda: all(p.status for p in procs), 120, f"worker {i + 1} to start")
            wait_for(
                lambda: (
                    len(owned(procs)) == partitions
                    and max(sum(1 for o in owned(procs).values() if o[0] == p.name) for p in procs)
                    <= -(-partitions // workers)
                ),
                120,
                "the partitions to be shared out",
            )
            started = time.monotonic()
            ingest = subprocess.Popen(
                [
                    *(sys.executable, "-m", "service.cli", "ingest", "-c", str(config)),
                    *("--readings", str(data)),
                    *(("--rate", str(rate)) if rate else ()),
                ],
                stdout=subprocess.PIPE,
                stderr=(workdir / "ingest.log").open("w"),
                text=True,
                cwd=ROOT,
            )
            total = sum(1 for _ in (data / "readings.csv").open()) - 1
            killed_at: float | None = None
            victim = procs[0]
            if kill_one:
                wait_for(
                    lambda: sum(o[2] for o in owned(procs).values()) >= KILL_AT_SHARE * total,
                    timeout,
                    "the workers to judge 40 % of the readings",
                )
                victim_parts = {p for p, o in owned(procs).items() if o[0] == victim.name}
                with victim.lock:
                    victim_seq = {
                        int(p): seq for p, (seq, _n) in victim.status["partitions"].items()
                    }
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                killed_at = time.time()
            out, _ = ingest.communicate(timeout=timeout)
            if ingest.returncode:
                raise RuntimeError(f"ingest failed: see {workdir / 'ingest.log'}")
            published = json.loads(out.strip().splitlines()[-1])["readings"]
            ends = asyncio.run(last_seqs(nats_url, partitions))
            wait_for(
                lambda: all(
                    (o := owned(procs).get(p)) is not None and o[1] >= ends[p]
                    for p in range(partitions)
                    if ends[p]
                ),
                timeout,
                "every partition to be judged to its end",
            )
            seconds = time.monotonic() - started
            time.sleep(1.0)  # the last events' writes
            takeover = regained = None
            from_snapshots = 0
            if killed_at is not None:
                taken = [
                    line
                    for p in procs[1:]
                    for line in list(p.lines)
                    if line.get("event") == "caught_up"
                    and line["partition"] in victim_parts
                    and line["at"] >= killed_at
                ]
                takeover = max(t["at"] for t in taken) - killed_at if taken else None
                from_snapshots = sum(1 for t in taken if t.get("started_from", 0) > 0)
                regained = regained_at(procs[1:], victim_parts, victim_seq, killed_at)
            rss = {p.name: p.status.get("max_rss_mb", 0.0) for p in procs if p.proc.poll() is None}
            cpu = {
                p.name: round(1e6 * p.status["cpu_s"] / max(1, p.status["readings"]), 1)
                for p in procs
                if p.proc.poll() is None and p.status.get("readings")
            }
        finally:
            for p in procs:
                if p.proc.poll() is None:
                    p.proc.send_signal(signal.SIGTERM)
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(15)
                if p.proc.poll() is None:
                    p.proc.kill()
        got, again = asyncio.run(run_alerts(db_url))
    return Outcome(
        workers=workers,
        alerts_identical=got == reference,
        lost=len(reference - got),
        duplicated=len(got - reference) + again,
        takeover_s=takeover,
        readings_per_s=published / seconds,
        readings=published,
        reference_alerts=len(reference),
        run_alerts=len(got),
        seconds=seconds,
        cpu_us_per_reading=cpu,
        max_rss_mb=rss,
        taken_from_snapshots=from_snapshots,
        regained_s=regained,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-one", action="store_true")
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--ttl", type=float, default=6.0, help="lease time to live, s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--snapshot-every",
        type=float,
        default=0.0,
        help="seconds between state snapshots (0: a new owner replays the whole window)",
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="ingest pace, readings/s (default: at once)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mg-scale-") as tmp:
        workdir = Path(tmp)
        data = workdir / "fleet"
        simulate(data, args.meters, args.days, args.seed)
        outcome = scale_out(
            data,
            workdir,
            args.workers,
            args.kill_one,
            args.partitions,
            args.ttl,
            snapshot_every_s=args.snapshot_every,
            rate=args.rate,
        )
    s = outcome.summary()
    print(
        f"{s['workers']} workers, {s['readings']:,} readings in {s['seconds']} s: "
        f"{s['readings_per_s']:,} readings/s; alerts {outcome.run_alerts} "
        f"(reference {outcome.reference_alerts}), lost {s['lost']}, duplicated "
        f"{s['duplicated']}, takeover {s['takeover_s']} s (position regained in "
        f"{s['regained_s']} s); CPU per reading "
        f"{s['cpu_us_per_reading']} µs"
    )
    print(json.dumps(s))


if __name__ == "__main__":
    main()
