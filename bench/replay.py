"""Replay end to end: `meterguard replay` on a simulated readings.csv of about a million rows.

The data set is the standard mix on a fleet sized to give ROWS readings in one day at one
reading a minute. The command runs as a subprocess (interpreter start-up, meters.csv,
chunked CSV parsing, every detector, alerts.jsonl) and is timed on the wall clock; the
readings.csv reader alone (chunks to ReadingBatches, with its text, quote and time-order
checks) is timed in this process; the bare-library floor is pyarrow reading the same file
into a table, in the same run.

    .venv/bin/python bench/replay.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pyarrow
import pyarrow.csv as pacsv

from meterguard.meters_csv import read_meters_csv
from meterguard.model import MeterRegistry
from service.telemetry_csv import ReadingsReader
from simulators.output import write_run
from simulators.population import CUSTOMERS_PER_TRANSFORMER
from simulators.scenario import mix_scenario


def main() -> None:
    """Simulate about --rows readings, then time replay and the pyarrow floor on them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="readings wanted")
    parser.add_argument("--seed", type=int, default=1, help="mix seed")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    # A little over: outages and silenced meters leave some readings out.
    wanted = args.rows * 1.01
    # The simulator adds one feeder meter per transformer of CUSTOMERS_PER_TRANSFORMER.
    per = CUSTOMERS_PER_TRANSFORMER
    meters = math.ceil(wanted / 1440 * per / (per + 1))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        summary = write_run(mix_scenario(args.seed, meters, 1.0), data)
        size_mb = (data / "readings.csv").stat().st_size / 1e6
        command = [sys.executable, "-m", "service.cli", "replay", str(data), "--out",
                   str(Path(tmp) / "alerts.jsonl")]  # fmt: skip
        replay_s = math.inf
        report = ""
        for _ in range(args.repeat):
            began = time.perf_counter()
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            replay_s = min(replay_s, time.perf_counter() - began)
            report = done.stdout.strip()
        registry = MeterRegistry(read_meters_csv(data / "meters.csv"))
        reader_s = math.inf
        for _ in range(args.repeat):
            began = time.perf_counter()
            for _batch in ReadingsReader(data / "readings.csv", registry):
                pass
            reader_s = min(reader_s, time.perf_counter() - began)
        floor_s = math.inf
        for _ in range(args.repeat):
            began = time.perf_counter()
            pacsv.read_csv(data / "readings.csv")
            floor_s = min(floor_s, time.perf_counter() - began)
    rows = summary.readings
    print(
        f"{platform.machine()}, Python {platform.python_version()}, pyarrow "
        f"{pyarrow.__version__}, numpy {np.__version__}, numba {numba.__version__}; "
        f"{summary.meters} meters, {rows:,} readings, {size_mb:.0f} MB"
    )
    print(f"replay end to end : {replay_s:6.2f} s  {rows / replay_s:>11,.0f} readings/s")
    print(f"reader alone      : {reader_s:6.2f} s  {rows / reader_s:>11,.0f} readings/s")
    print(f"pyarrow read floor: {floor_s:6.2f} s  {rows / floor_s:>11,.0f} readings/s")
    print(f"replay / floor    : {replay_s / floor_s:6.1f}")
    print(f"replay said: {report}")


if __name__ == "__main__":
    main()
