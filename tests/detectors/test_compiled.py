"""The compiled passes give numpy's own figures: sums, maxima, orders, tick cuts, neighbours."""

from __future__ import annotations

import math

import numpy as np

from detectors.compiled import (
    by_meter_compiled,
    reduce_max_compiled,
    reduce_sum_compiled,
    scan_compiled,
    sorted_by_compiled,
)
from detectors.context import BatchContext, FleetArrays
from meterguard.model import QUANTITIES, QUANTITY_INDEX, Meter, MeterRegistry, ReadingBatch


def test_sums_and_maxima_are_numpys_to_the_bit() -> None:
    # numpy sums a segment pairwise (eight running sums, halves past 128 values): a plain
    # running sum differs in the last bits, and an alert's kWh with it.
    rng = np.random.default_rng(7)
    for size in (1, 2, 7, 8, 9, 17, 128, 129, 300, 1000):
        values = rng.random(size) * 10.0 ** rng.uniform(-3, 3, size) * rng.choice([-1, 1], size)
        for lo, hi in ((0, size), (size // 3, size), (0, max(1, size // 2))):
            assert reduce_sum_compiled(values, lo, hi) == np.add.reduceat(values[lo:hi], [0])[0]
        values[rng.random(size) < 0.1] = np.nan
        expected = np.maximum.reduceat(values, [0])[0]
        got = reduce_max_compiled(values, 0, size)
        assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_rows_by_meter_are_the_stable_order() -> None:
    rng = np.random.default_rng(3)
    slot = rng.integers(0, 40, 500).astype(np.int32)
    ts = np.sort(rng.integers(0, 600, 500).astype(np.float64))
    order = by_meter_compiled(slot, 40)
    assert order.tolist() == np.argsort(slot, kind="stable").tolist()
    assert order.tolist() == np.lexsort((ts, slot)).tolist()


def test_the_merge_sort_is_lexsorts_order_ties_and_all() -> None:
    rng = np.random.default_rng(5)
    for size in (0, 1, 2, 3, 64, 1001):
        major = rng.integers(0, 9, size).astype(np.int64)
        minor = rng.integers(0, 4, size).astype(np.float64)  # many exact ties
        assert sorted_by_compiled(major, minor).tolist() == np.lexsort((minor, major)).tolist()


def test_the_scan_finds_tick_cuts_late_rows_and_disorder() -> None:
    ts = np.array([10.0, 290.0, 300.0, 301.0, 899.0, 900.0])
    slot = np.zeros(6, dtype=np.int32)
    fine, latest, bounds = scan_compiled(ts, slot, np.full(1, -np.inf), 300.0)
    assert (fine, latest, bounds.tolist()) == (True, 900.0, [0, 2, 4, 5, 6])
    late, _, _ = scan_compiled(ts, slot, np.full(1, 500.0), 300.0)
    assert not late
    fine, _, bounds = scan_compiled(ts[::-1].copy(), slot, np.full(1, -np.inf), 300.0)
    assert fine
    assert bounds.size == 0  # out of order: the caller sorts first


def _neighbours(n_transformers: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the compiled neighbours' voltage and a plain reference for a random batch."""
    rng = np.random.default_rng(n_transformers)
    meters = [
        Meter(id=f"M{i}", service="3p4w", nominal_v=230, transformer=f"T{i % n_transformers}")
        for i in range(2 * n_transformers)
    ]
    meters.append(Meter(id="ALONE", service="3p4w", nominal_v=230))
    registry = MeterRegistry(meters)
    # Meters of a dozen transformers report (and the one without a transformer).
    chosen = [i for i in range(len(meters)) if i % n_transformers < 12] + [len(meters) - 1]
    slot = rng.choice(chosen, rows).astype(np.int32)
    ts = np.sort(rng.uniform(0, 180, rows))
    values = np.full((len(QUANTITIES), rows), np.nan)
    volts = rng.normal(230, 5, (3, rows))
    volts[rng.random((3, rows)) < 0.2] = np.nan
    values[QUANTITY_INDEX["v1"] : QUANTITY_INDEX["v1"] + 3] = volts
    batch = ReadingBatch(ts=ts, slot=slot, values=values, events=np.zeros(rows, np.uint32))
    fleet = FleetArrays.from_registry(registry)
    ctx = BatchContext(batch, fleet, np.zeros(rows), 180.0, np.zeros(0), np.zeros(0))
    expected = np.full((3, rows), np.nan)
    minute = np.floor(ts / 60.0)
    for r in range(rows):
        t = fleet.transformer[slot[r]]
        others = [
            o
            for o in range(rows)
            if o != r and t >= 0 and fleet.transformer[slot[o]] == t and minute[o] == minute[r]
        ]
        for k in range(3):
            rel = [volts[k, o] / 230.0 for o in others if np.isfinite(volts[k, o])]
            if rel:
                expected[k, r] = sum(rel) / len(rel)
    return ctx.neighbour_voltage(), expected


def test_neighbours_voltage_with_few_and_with_many_transformers() -> None:
    # Few (transformer, minute) pairs are counted in a table; many (more than the rows)
    # are numbered as they come: both give each row the mean of its neighbours.
    for n_transformers, rows in ((3, 200), (400, 60)):
        got, expected = _neighbours(n_transformers, rows)
        assert np.isfinite(expected).any()
        assert np.isnan(expected).any()
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
