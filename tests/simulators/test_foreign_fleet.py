"""bench/foreign_fleet.py: a run whose consumption comes from demandlib and richardsonpy.

Needs the load-model libraries of the dev extra (marker `load_libraries`); without them
the test fails, it never skips. The script runs as its own process, as it is used:
richardsonpy is GPL-3.0 and never shares a process with gurux-dlms (GPLv2-only), which the
collector tests load.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meterguard.meters_csv import read_meters_csv
from meterguard.model import MeterRegistry, ReadingBatch
from meterguard.timeparse import parse_time
from service.telemetry_csv import ReadingsReader
from simulators.load import class_load_kw
from simulators.population import BoolArray, FleetOptions, FloatArray, build_population

# Slow: other authors' load models run over a whole fleet before the first test.
pytestmark = [pytest.mark.load_libraries, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SEED, METERS = 4, 40
#: Sunday 2026-01-11 then Monday: incidents of the mix start after the first day.
START = 1768089600.0
DAY_S = 86400.0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for library in ("demandlib", "richardsonpy"):
        assert importlib.util.find_spec(library), f"{library} missing: pip install -e '.[dev]'"
    out = tmp_path_factory.mktemp("foreign")
    args = ["--seed", str(SEED), "--meters", str(METERS), "--days", "2", "--step", "15min"]
    args += ["--start", "2026-01-11", "--out", str(out)]
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "foreign_fleet.py"), *args],
        check=True, cwd=ROOT, timeout=300, capture_output=True,
    )  # fmt: skip
    return out


def _read(run: Path) -> tuple[MeterRegistry, ReadingBatch, ReadingsReader]:
    registry = MeterRegistry(read_meters_csv(run / "meters.csv"))
    reader = ReadingsReader(run / "readings.csv", registry)
    return registry, ReadingBatch.concat(list(reader)), reader


def _honest(run: Path, registry: MeterRegistry, batch: ReadingBatch) -> BoolArray:
    """Return which readings no incident, closure, solar or supply event touches."""
    keep = np.ones(len(batch), dtype=bool)
    slot = {m.id: registry.slot(m.id) for m in registry}
    on_tx = {m.id: m.transformer for m in registry}
    with (run / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            within = (batch.ts >= parse_time(row["start"])) & (batch.ts <= parse_time(row["end"]))
            keep &= ~(within & (batch.slot == slot[row["meter"]]))
    with (run / "confounders.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            within = (batch.ts >= parse_time(row["start"])) & (batch.ts <= parse_time(row["end"]))
            named = [slot[m] for m in row["meters"].split(";") if m]
            if row["transformer"]:
                named += [slot[m] for m, t in on_tx.items() if t == row["transformer"]]
            keep &= ~(within & np.isin(batch.slot, named))
    sunny = [registry.slot(m.id) for m in registry if m.generation]
    keep &= ~np.isin(batch.slot, sunny)
    return keep


def _kw(batch: ReadingBatch) -> FloatArray:
    phases = np.vstack([batch.col("p1"), batch.col("p2"), batch.col("p3")])
    out: FloatArray = np.nansum(phases, axis=0) / 1000.0
    return out


def test_the_run_is_valid_telemetry_with_labels(run: Path) -> None:
    registry, batch, reader = _read(run)
    assert reader.stats.bad == 0
    rows = sum(1 for _ in (run / "readings.csv").open()) - 1
    assert reader.stats.good == len(batch) == rows
    customers = [m for m in registry if m.role == "customer"]
    assert len(customers) == METERS
    assert any(m.role == "feeder" for m in registry)
    # 15-minute cadence over two days.
    assert np.array_equal(np.unique(np.diff(np.unique(batch.ts))), [900.0])
    assert batch.ts.min() == START
    assert batch.ts.max() == START + 2 * DAY_S - 900.0
    with (run / "labels.csv").open(newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert len(labels) >= 10
    assert {"bypass", "reversal", "tamper"} <= {row["kind"] for row in labels}
    with (run / "confounders.csv").open(newline="") as handle:
        assert next(csv.reader(handle))[0] == "kind"


def test_households_are_not_the_simulators_own(run: Path) -> None:
    registry, batch, _ = _read(run)
    keep = _honest(run, registry, batch) & (batch.ts < START + DAY_S)
    pop = build_population(FleetOptions(customers=METERS, seed=SEED))
    times = START + np.arange(0.0, DAY_S, 900.0)
    own_spread, own_bursts = class_load_kw(pop, times[:, None])
    own = own_spread + own_bursts
    kw = _kw(batch)
    profiles, distance = [], []
    for i, customer in enumerate(pop.customers):
        if customer.customer_class != "residential":
            continue
        rows = keep & (batch.slot == registry.slot(customer.id))
        if rows.sum() < 90:
            continue
        at = np.searchsorted(times, batch.ts[rows])
        foreign = np.full(times.size, np.nan)
        foreign[at] = kw[rows]
        profiles.append(foreign)
        distance.append(np.nanmean(np.abs(foreign - own[:, i])) / own[:, i].mean())
    assert len(profiles) >= 10
    # Not the simulator's shapes ...
    assert np.median(distance) > 0.5
    # ... and one household each: no two homes move together.
    stacked = np.array(profiles)
    complete = ~np.isnan(stacked).any(axis=0)
    corr = np.corrcoef(stacked[:, complete])
    assert np.max(corr[~np.eye(len(profiles), dtype=bool)]) < 0.9


def test_businesses_keep_sundays(run: Path) -> None:
    registry, batch, _ = _read(run)
    keep = _honest(run, registry, batch)
    kw = _kw(batch)
    ratios = []
    for meter in registry:
        if meter.customer_class != "commercial":
            continue
        rows = keep & (batch.slot == registry.slot(meter.id))
        quarter = ((batch.ts[rows] - START) // 900.0).astype(int)
        sunday = dict(zip(quarter[quarter < 96], kw[rows][quarter < 96], strict=True))
        monday = dict(zip(quarter[quarter >= 96] - 96, kw[rows][quarter >= 96], strict=True))
        both = sorted(set(sunday) & set(monday))
        if len(both) >= 24:
            ratios.append(sum(sunday[q] for q in both) / sum(monday[q] for q in both))
    assert len(ratios) >= 3
    # Every commercial SLP class keeps Sunday apart (G1 offices 0.16 ... G6 weekend trade 1.28).
    assert all(abs(r - 1.0) > 0.1 for r in ratios), ratios
