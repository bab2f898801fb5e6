"""Detector engine throughput: readings/s through every detector on in-memory batches.

A fleet and its standard mix of incidents are simulated and written once as replay files,
read into memory, cut into batches of SPAN seconds of data time (one batch per poll round
of the live service), and timed through a fresh `Engine` with every detector at its
defaults. The "floor" is one vectorised numpy pass over the same batches (NaN-aware sum
per quantity and a per-meter bincount): a lower bound on what any columnar pass over the
rows costs, NOT a bare-library version of the detectors' work, so engine/floor says how
far the engine is above touching every value once, not how much overhead it adds.
Times are this process's CPU time (one core; the machine is shared), best of --repeat.

    .venv/bin/python bench/engine.py [--meters 1000] [--days 1] [--span 60 300 3600]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import pyarrow

from detectors.engine import Engine, build_detectors
from meterguard.meters_csv import read_meters_csv
from meterguard.model import MeterRegistry, ReadingBatch
from service.replay import split_by_time
from service.telemetry_csv import ReadingsReader
from simulators.output import write_run
from simulators.scenario import mix_scenario


def load_batches(data: Path) -> tuple[MeterRegistry, list[ReadingBatch]]:
    """Read a replay folder into memory as one batch per file chunk."""
    registry = MeterRegistry(read_meters_csv(data / "meters.csv"))
    return registry, list(ReadingsReader(data / "readings.csv", registry))


def bench_engine(registry: MeterRegistry, batches: list[ReadingBatch]) -> tuple[float, int]:
    """Run a fresh engine (every detector at its defaults) over the batches.

    Returns the CPU seconds it took and the number of alert events it emitted.
    """
    engine = Engine(registry, build_detectors({}, registry))
    began = time.process_time()
    events = 0
    for batch in batches:
        events += len(engine.process(batch))
    return time.process_time() - began, events


def bench_floor(registry: MeterRegistry, batches: list[ReadingBatch]) -> float:
    """Return the CPU seconds of the lower-bound numpy pass over the same batches."""
    size = len(registry)
    began = time.process_time()
    for batch in batches:
        np.nansum(batch.values, axis=1)
        np.bincount(batch.slot, weights=np.nan_to_num(batch.values[0]), minlength=size)
    return time.process_time() - began


def main() -> None:
    """Simulate the fleet, then print engine and floor throughput per batch span."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000, help="customer meters")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days")
    parser.add_argument("--seed", type=int, default=1, help="mix seed")
    parser.add_argument("--span", type=float, nargs="+", default=[60.0, 300.0, 3600.0])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        write_run(mix_scenario(args.seed, args.meters, args.days), data)
        registry, chunks = load_batches(data)
    rows = sum(len(c) for c in chunks)
    print(
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__}, pyarrow {pyarrow.__version__}; "
        f"{len(registry)} meters, {rows:,} readings in memory"
    )
    print(f"{'span':>8} {'batch rows':>11} {'engine readings/s':>18} {'floor readings/s':>17} "
          f"{'engine/floor time':>18} {'events':>7}")  # fmt: skip
    for span in args.span:
        batches = [b for c in chunks for b in split_by_time(c, span)]
        engine_s = min(bench_engine(registry, batches)[0] for _ in range(args.repeat))
        _, events = bench_engine(registry, batches)
        floor_s = min(bench_floor(registry, batches) for _ in range(args.repeat))
        print(
            f"{span:>7.0f}s {rows / len(batches):>11,.0f} {rows / engine_s:>18,.0f} "
            f"{rows / floor_s:>17,.0f} {engine_s / floor_s:>18.1f} {events:>7}"
        )


if __name__ == "__main__":
    main()
