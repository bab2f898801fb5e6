"""A transformer's energy balance by hour, from the series store: check meter against customers.

Each meter's energy in an hour is the mean of its active power (p1 + p2 + p3) over the
5-minute buckets the store averages its readings into, times the hour; its coverage is the
share of those buckets it sent readings in. An hour is complete when the check meter and
every customer covered at least MIN_COVERAGE of it, as the detector's hourly ledger asks;
incomplete hours are shown but say so. The gap (check meter minus customers) is set
against the technical-loss allowance the energy-balance detector is configured with.

The ledger (detectors/ledger.py) counts energy registers where they step sensibly, so
its figures can differ from these by the meters' power-versus-register error (well under
a percent on class 1 meters); the view needs no engine and reads any store.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np

from meterguard.losses import LossTerms
from meterguard.model import FloatArray, Meter
from meterguard.stores import SeriesStore

HOUR_S = 3600.0
BUCKETS_PER_HOUR = 12
#: Share of an hour a meter must have covered for the hour to be judged (as the ledger).
MIN_COVERAGE = 0.8
POWER = ("p1", "p2", "p3")


@dataclass(frozen=True, slots=True)
class MeterHours:
    """One meter's energy per hour (kWh, NaN: no reading) and the share of it covered."""

    kwh: FloatArray
    coverage: FloatArray


@dataclass(frozen=True, slots=True)
class HourBalance:
    """One hour of a transformer: what its check meter and its customers measured."""

    start: float
    feeder_kwh: float | None
    #: The customers' sum (None when none of them sent a reading in the hour).
    customers_kwh: float | None
    #: Check meter minus customers (None without a check meter reading).
    gap_kwh: float | None
    allowance_kwh: float | None
    #: The gap beyond the allowance: energy no meter and no technical loss explains.
    excess_kwh: float | None
    complete: bool


def window(end: float, hours: int) -> float:
    """Return the start of `hours` whole hours ending with the hour that holds `end`."""
    return (math.floor(end / HOUR_S) + 1) * HOUR_S - hours * HOUR_S


async def meter_hours(series: SeriesStore, meter: str, start: float, hours: int) -> MeterHours:
    """Return a meter's hourly energy from its 5-minute mean power over `hours` from start."""
    # The end is inclusive: a millisecond short of the last hour makes 300-s buckets exactly.
    got = await series.query(
        meter, start, start + hours * HOUR_S - 0.001, POWER, hours * BUCKETS_PER_HOUR
    )
    kwh = np.full(hours, np.nan)
    if not len(got.ts):
        return MeterHours(kwh, np.zeros(hours))
    power = np.vstack([got.values[q] for q in POWER])
    measured = np.isfinite(power).any(axis=0)
    hour = ((got.ts - start) // HOUR_S).astype(np.int64)
    kept = measured & (hour >= 0) & (hour < hours)
    total_w = np.nansum(power[:, kept], axis=0)
    counts = np.bincount(hour[kept], minlength=hours)
    sums = np.bincount(hour[kept], weights=total_w, minlength=hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        kwh = np.where(counts > 0, sums / counts / 1000.0, np.nan)
    return MeterHours(kwh, np.minimum(counts / BUCKETS_PER_HOUR, 1.0))


async def balance(
    series: SeriesStore, meters: list[Meter], start: float, hours: int, terms: LossTerms
) -> list[HourBalance]:
    """Return a transformer's balance per hour: check meter(s) against the sum of customers."""
    feeders = [m for m in meters if m.role == "feeder"]
    customers = [m for m in meters if m.role != "feeder"]
    found = await asyncio.gather(
        *(meter_hours(series, m.id, start, hours) for m in [*feeders, *customers])
    )
    fed, used = found[: len(feeders)], found[len(feeders) :]
    rows = []
    for h in range(hours):
        feeder_kwh = _sum([f.kwh[h] for f in fed]) if fed else None
        customers_kwh = _sum([c.kwh[h] for c in used])
        covered = [x.coverage[h] >= MIN_COVERAGE for x in found]
        complete = bool(fed) and all(covered)
        gap = allowance = excess = None
        if feeder_kwh is not None:
            gap = feeder_kwh - (customers_kwh or 0.0)
            allowance = terms.loss_allowance * max(feeder_kwh, 0.0)
            excess = gap - allowance
        rows.append(
            HourBalance(
                start=start + h * HOUR_S,
                feeder_kwh=feeder_kwh,
                customers_kwh=customers_kwh,
                gap_kwh=gap,
                allowance_kwh=allowance,
                excess_kwh=excess,
                complete=complete,
            )
        )
    return rows


def _sum(values: list[float]) -> float | None:
    """Sum what was measured (None when nothing was)."""
    known = [v for v in values if math.isfinite(v)]
    return float(sum(known)) if known else None
