"""Node-RED vs bare paho vs meterguard on the Node-RED peer harness's stream, in one run.

Needs a writable copy of the peer harness (gen.py, pub.py, flow.json, settings.js) on
which its setup.sh has run (node_modules, .venv); give its folder with --harness or in
MG_NODERED_HARNESS. The bare consumer is meterguard's own reference: the same client
library and JSON decoder as meterguard (paho-mqtt on its own loop, orjson), only
decoding and counting (mg_sub.py --bare). For each consumer it
starts a private mosquitto configured like the harness's run.sh, starts the consumer, waits
for its subscription, runs the harness's pub.py (which times first publish -> bench/done
and checks the count), and stops everything. One JSON line per consumer goes to
--results; a Markdown table is printed at the end.

Modes: nodered; bare and meterguard on the MQTT source's default protocol (3.1.1), bare5
and meterguard5 on MQTT 5 (bare311 and meterguard311 name 3.1.1 explicitly); workersN (N
meterguard processes on a shared subscription).

usage: compare.py --harness DIR [-n 200000] [-m 1000] [--modes nodered,bare,meterguard]
                  [--rounds 1]
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

HERE = Path(__file__).resolve().parent


def free_port(start: int = 18830) -> int:
    """Return a port nobody listens on, from `start` upwards."""
    port = start
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
        port += 1


def wait_listening(port: int) -> None:
    """Wait until something accepts connections on the port."""
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def broker(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    """Start a private mosquitto for the run; return its process."""
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        # The harness's run.sh settings, and Mosquitto's in-flight window as
        # deploy/mosquitto.conf sets it: the default of 20 unacknowledged messages holds
        # back any consumer that acknowledges after processing, as meterguard does.
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 10000\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
        "log_type notice\nlog_type subscribe\n"
    )
    log = open(tmp / "mosquitto.log", "wb")  # noqa: SIM115 - lives as long as the broker
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=log)
    wait_listening(port)
    return proc


def cpu_seconds(pid: int) -> float:
    """Return a process's user+system CPU seconds so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def aggregator(port: int, n: int, workers: int) -> threading.Event:
    """Sum the workers' counts; publish bench/done once the end marker was seen and all are in."""
    counts: dict[str, dict[str, object]] = {}
    finished = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-aggregator")

    def on_message(c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        counts[msg.topic] = json.loads(msg.payload)
        total = sum(int(v["readings"]) for v in counts.values())  # type: ignore[call-overload]
        ended = any(v["end"] for v in counts.values())
        if ended and total >= n and not finished.is_set():
            finished.set()
            c.publish("bench/done", json.dumps({"messages": total}), qos=1)

    client.on_connect = lambda c, u, f, rc, p: c.subscribe("bench/workers/+", qos=1)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    return finished


def run_mode(
    mode: str, harness: Path, data: Path, n: int, m: int, results: Path
) -> dict[str, object]:
    """Run one consumer (mode) on the harness's stream; return its summary line."""
    tmp = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    bproc = broker(tmp, port)
    env = dict(os.environ, MQTT_PORT=str(port))
    hpy = str(harness / ".venv" / "bin" / "python")
    mg = [
        sys.executable,
        str(HERE / "mg_sub.py"),
        "--harness",
        str(harness),
        "--port",
        str(port),
        "-m",
        str(m),
    ]
    consumers = 1
    log = open(tmp / "consumer.log", "wb")  # noqa: SIM115
    if mode == "nodered":
        (tmp / "nr").mkdir()
        shutil.copy(harness / "flow.json", tmp / "nr" / "flow.json")
        version = json.loads((harness / "node_modules/node-red/package.json").read_text())[
            "version"
        ]
        label, check = f"node-red {version}", ["--check-alerts"]
        cmd = [
            "node",
            str(harness / "node_modules/node-red/red.js"),
            "--userDir",
            str(tmp / "nr"),
            "--settings",
            str(harness / "settings.js"),
            str(tmp / "nr" / "flow.json"),
        ]
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
    elif mode in ("bare", "bare311", "bare5"):
        protocol = "5" if mode == "bare5" else "3.1.1"
        label, check = f"paho-mqtt + orjson bare loop, MQTT {protocol}", []
        bare = [*mg, "--bare", "--protocol", protocol, "--client-id", "bench-bare"]
        procs.append(subprocess.Popen(bare, stdout=log, stderr=log))
    elif mode in ("meterguard", "meterguard311", "meterguard5"):
        protocol = "5" if mode == "meterguard5" else "3.1.1"
        label, check = f"meterguard MqttSource + detectors, 1 process, MQTT {protocol}", []
        procs.append(subprocess.Popen([*mg, "--protocol", protocol], stdout=log, stderr=log))
    elif mode.startswith("workers"):
        consumers = int(mode.removeprefix("workers"))
        label, check = f"meterguard, {consumers} worker processes (shared subscription)", []
        for w in range(consumers):
            procs.append(
                subprocess.Popen(
                    [*mg, "--share", "mg", "--client-id", f"mg-w{w}"], stdout=log, stderr=log
                )
            )
    else:
        raise SystemExit(f"unknown mode {mode}")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = (tmp / "mosquitto.log").read_text(errors="replace")
            if text.count("bench/meters/+/reading") >= consumers:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(
                f"{mode}: consumer never subscribed:\n{(tmp / 'consumer.log').read_text()}"
            )
        if consumers > 1:
            aggregator(port, n, consumers)
        broker_cpu = cpu_seconds(bproc.pid)
        subprocess.run(
            [
                hpy,
                str(harness / "pub.py"),
                str(data),
                "--port",
                str(port),
                "--pid",
                str(procs[0].pid),
                "--broker-pid",
                str(bproc.pid),
                "--label",
                label,
                "--results",
                str(results),
                *check,
            ],
            check=False,
        )
        broker_cpu = cpu_seconds(bproc.pid) - broker_cpu
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        bproc.terminate()
        bproc.wait(10)
        print((tmp / "consumer.log").read_text(errors="replace")[-2000:])
        shutil.rmtree(tmp, ignore_errors=True)
    summary: dict[str, object] = json.loads(results.read_text().splitlines()[-1])
    # The broker shares the machine's cores with the consumer: its CPU shows what is left.
    summary["broker_cpu_s"] = round(broker_cpu, 1)
    return summary


def main() -> None:
    """Run every consumer on the same stream and print the figures side by side."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--harness",
        type=Path,
        default=os.environ.get("MG_NODERED_HARNESS"),
        help="the harness copy (default: $MG_NODERED_HARNESS)",
    )
    ap.add_argument("-n", type=int, default=200_000)
    ap.add_argument("-m", type=int, default=1000)
    ap.add_argument("--modes", default="nodered,bare,meterguard")
    ap.add_argument("--rounds", type=int, default=1, help="run the modes this many times, in turn")
    ap.add_argument("--results", type=Path, default=Path("compare-results.jsonl"))
    a = ap.parse_args()
    if a.harness is None:
        ap.error("give the harness folder with --harness or MG_NODERED_HARNESS")
    harness = a.harness.resolve()
    data = harness / "data" / f"messages_{a.n}_{a.m}.jsonl"
    if not Path(str(data) + ".expected.json").exists():
        subprocess.run(
            [
                str(harness / ".venv/bin/python"),
                str(harness / "gen.py"),
                "-n",
                str(a.n),
                "-m",
                str(a.m),
                "-o",
                str(data),
            ],
            check=True,
        )
    rows = [
        run_mode(mode, harness, data, a.n, a.m, a.results)
        for _ in range(a.rounds)
        for mode in a.modes.split(",")
    ]
    print(
        "\n| consumer | readings/s | seconds | CPU s | CPU µs per reading | broker CPU s "
        "| peak RSS MiB | ok |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = r.get("cpu_s")
        per = f"{float(cpu) / a.n * 1e6:.1f}" if isinstance(cpu, int | float) else "-"
        print(
            f"| {r['label']} | {r.get('msg_per_s')} | {r.get('seconds')} | {cpu} | {per} | "
            f"{r.get('broker_cpu_s')} | {r.get('rss_peak_mib')} | {r['ok']} |"
        )


if __name__ == "__main__":
    main()
