"""What detectors share about a batch: the fleet as arrays, intervals, neighbours, data time."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import numba
import numpy as np
import numpy.typing as npt

from detectors.compiled import sorted_by_compiled
from detectors.ledger import Balances, ClosedHours
from meterguard.calendar import Calendar
from meterguard.model import (
    QUANTITY_INDEX,
    AlertKind,
    FloatArray,
    IntArray,
    MeterRegistry,
    ReadingBatch,
)

BoolArray = npt.NDArray[np.bool_]

#: Readings are grouped by this many seconds when a meter is compared with its neighbours.
NEIGHBOUR_BUCKET_S = 60.0
_V1 = QUANTITY_INDEX["v1"]


@dataclass(frozen=True, slots=True)
class FleetArrays:
    """The registry as per-slot arrays, built once so detectors stay vectorised."""

    transformer: IntArray  # index of the supplying transformer, -1 when unknown
    n_transformers: int
    feeder: BoolArray
    customer: BoolArray
    generation: BoolArray
    three_phase: BoolArray
    has_neutral_wire: BoolArray
    #: Expected RMS value of the voltage the meter reports (line-to-line for 3p3w), V.
    ref_v: FloatArray
    nominal_v: FloatArray
    ct_primary_a: FloatArray
    customer_class: list[str | None]

    @classmethod
    def from_registry(cls, registry: MeterRegistry) -> FleetArrays:
        """Build the arrays of a registry."""
        names: dict[str, int] = {}
        transformer = np.full(len(registry), -1, dtype=np.int32)
        for slot, meter in enumerate(registry):
            if meter.transformer:
                transformer[slot] = names.setdefault(meter.transformer, len(names))
        nominal = registry.float_array(lambda m: m.nominal_v)
        line_to_line = registry.flag_array(lambda m: m.service == "3p3w")
        return cls(
            transformer=transformer,
            n_transformers=len(names),
            feeder=registry.flag_array(lambda m: m.role == "feeder"),
            customer=registry.flag_array(lambda m: m.role == "customer"),
            generation=registry.flag_array(lambda m: m.generation),
            three_phase=registry.flag_array(lambda m: m.phases == 3),
            has_neutral_wire=registry.flag_array(lambda m: m.service != "3p3w"),
            ref_v=np.where(line_to_line, nominal * math.sqrt(3.0), nominal),
            nominal_v=nominal,
            ct_primary_a=registry.float_array(lambda m: m.ct_primary_a),
            customer_class=[m.customer_class for m in registry],
        )


@dataclass(frozen=True)
class OpenAlerts:
    """Which meters have an alert open now, per kind, and how much each is estimated to lose.

    It reads the engine's own per-kind arrays (whether an incident is raised, and its
    figures so far), never copies: what it tells is as of the tick being judged.
    """

    #: Per kind: whether each meter has an alert open, and the lifecycle's figure rows.
    raised: Mapping[AlertKind, npt.NDArray[np.bool_]] = field(default_factory=dict)
    figures: Mapping[AlertKind, FloatArray] = field(default_factory=dict)
    #: The row of `figures` holding the energy lost so far, kWh.
    kwh_row: int = 0
    #: Kinds whose estimated loss is energy the meter did not record (`Detector.unmetered`).
    unmetered: frozenset[AlertKind] = frozenset()

    def open_any(self, kinds: Iterable[AlertKind], n: int) -> npt.NDArray[np.bool_]:
        """Return, per slot, whether an alert of any of `kinds` is open."""
        found = np.zeros(n, dtype=np.bool_)
        for kind in kinds:
            found |= self.raised[kind]
        return found

    def lost_kwh(self, kind: AlertKind) -> FloatArray:
        """Return, per slot, the energy its open alert of `kind` estimates lost so far, kWh.

        NaN where none is open.
        """
        lost: FloatArray = np.where(self.raised[kind], self.figures[kind][self.kwh_row], np.nan)
        return lost


@dataclass(slots=True)
class BatchContext:
    """One batch as the engine hands it to every detector, with figures computed once."""

    batch: ReadingBatch
    fleet: FleetArrays
    #: Seconds since the same meter's previous reading (0 for the first or after a silence).
    dt: FloatArray
    #: Data time now: the latest reading seen so far, s (in `poll`: the tick polled at).
    now: float
    #: Per slot: data time of the meter's latest reading (-inf before the first).
    last_seen: FloatArray
    #: Per slot: the meter's usual interval between readings, s (NaN before two are seen).
    interval_s: FloatArray
    #: Local hours and day types of the fleet's place.
    calendar: Calendar = field(default_factory=Calendar)
    #: Meter hours closed since the detectors last ran (detectors/ledger.py).
    hours: ClosedHours = field(default_factory=ClosedHours.none)
    #: Transformer balances closed since the detectors last ran.
    balances: Balances = field(default_factory=Balances.none)
    #: The alerts open now (all detectors').
    alerts: OpenAlerts = field(default_factory=OpenAlerts)
    _neighbour_v: FloatArray | None = field(default=None, repr=False)
    _feeder_v: FloatArray | None = field(default=None, repr=False)

    def _transformer_minute_keys(self) -> tuple[npt.NDArray[np.int64], int]:
        """Return a dense key per row for (transformer, minute); -1 without a transformer."""
        batch = self.batch
        trafo = self.fleet.transformer[batch.slot].astype(np.int64)
        bucket = np.floor(batch.ts / NEIGHBOUR_BUCKET_S)
        low = bucket.min()
        span = int(bucket.max() - low) + 1
        full = np.where(trafo >= 0, trafo * span + (bucket - low).astype(np.int64), -1)
        if self.fleet.n_transformers * span <= 4 * len(batch):
            # Few (transformer, minute) pairs: the key itself is dense enough.
            return full, self.fleet.n_transformers * span
        _, key = np.unique(full, return_inverse=True)
        key = np.where(trafo >= 0, key, -1).astype(np.int64)
        return key, int(key.max()) + 1

    def feeder_voltage(self) -> FloatArray:
        """Return the check meter's voltage per phase and row, shape (3, rows).

        The voltage the row's transformer's feeder meter read in the same minute; NaN when
        there is no such reading.
        """
        if self._feeder_v is not None:
            return self._feeder_v
        batch = self.batch
        n = len(batch)
        out = np.full((3, n), np.nan)
        if n and self.fleet.feeder[batch.slot].any():
            key, size = self._transformer_minute_keys()
            feeder_rows = np.flatnonzero(self.fleet.feeder[batch.slot] & (key >= 0))
            table = np.full((3, max(size, 1)), np.nan)
            volts = phase_block(batch, "v1")
            table[:, key[feeder_rows]] = volts[:, feeder_rows]
            has = key >= 0
            out[:, has] = table[:, key[has]]
        self._feeder_v = out
        return out

    def neighbour_voltage(self) -> FloatArray:
        """Return the neighbours' mean relative voltage per phase and row, shape (3, rows).

        The mean of voltage / reference over the OTHER meters on the row's transformer in
        the same minute; NaN when none reported.
        """
        if self._neighbour_v is None:
            batch = self.batch
            self._neighbour_v = np.full((3, len(batch)), np.nan)
            if len(batch):
                _neighbours_compiled(
                    batch.values,
                    batch.ts,
                    batch.slot,
                    self.fleet.transformer,
                    self.fleet.n_transformers,
                    self.fleet.ref_v,
                    self._neighbour_v,
                )
        return self._neighbour_v


def _neighbours(
    values: FloatArray,
    ts: FloatArray,
    slot: IntArray,
    transformer: IntArray,
    n_transformers: int,
    ref_v: FloatArray,
    out: FloatArray,
) -> None:
    """Fill `out` with each row's neighbours' mean relative voltage per phase; compiled.

    Rows group by (transformer, minute); each group's sums run in row order from 0, as
    np.bincount's do, so the means are bit for bit those of the numpy expression.
    """
    # Plain loops, no array expressions: each costs compile time in every fresh process.
    n = ts.shape[0]
    bucket = np.empty(n)
    low, high = np.inf, -np.inf
    for r in range(n):
        bucket[r] = float(math.floor(ts[r] / NEIGHBOUR_BUCKET_S))
        low, high = min(low, bucket[r]), max(high, bucket[r])
    span = int(high - low) + 1
    key = np.empty(n, np.int64)
    for r in range(n):
        t = transformer[slot[r]]
        key[r] = t * span + int(bucket[r] - low) if t >= 0 else -1
    size = n_transformers * span
    if size > 4 * n + 64:
        # Many (transformer, minute) pairs for the rows: number the pairs present instead.
        order = sorted_by_compiled(key, np.zeros(n))
        dense = np.empty(n, np.int64)
        groups = -1
        previous = -1
        for r in order:
            dense[r] = -1
            if key[r] >= 0:
                if key[r] != previous:
                    groups += 1
                    previous = key[r]
                dense[r] = groups
        key = dense
        size = groups + 1
    rel = np.empty((3, n))
    sums = np.zeros((3, size))
    counts = np.zeros((3, size))
    for r in range(n):
        ref = ref_v[slot[r]]
        for k in range(3):
            rel[k, r] = values[_V1 + k, r] / ref
            if key[r] >= 0 and math.isfinite(rel[k, r]):
                sums[k, key[r]] += rel[k, r]
                counts[k, key[r]] += 1.0
    for r in range(n):
        g = key[r]
        if g < 0:
            continue
        for k in range(3):
            valid = math.isfinite(rel[k, r])
            other_n = counts[k, g] - (1.0 if valid else 0.0)
            if other_n > 0:
                out[k, r] = (sums[k, g] - (rel[k, r] if valid else 0.0)) / other_n


_neighbours_compiled = cast(Callable[..., None], numba.njit(cache=True)(_neighbours))


def phase_block(batch: ReadingBatch, first: str) -> FloatArray:
    """Return the three adjacent per-phase columns starting at `first` (v1, i1, p1, q1)."""
    start = QUANTITY_INDEX[first]
    block: FloatArray = batch.values[start : start + 3]
    return block
