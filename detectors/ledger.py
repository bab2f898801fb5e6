"""Hourly energy per meter and per transformer, in data time, for the window detectors.

Each reading stands for the interval since the meter's previous one: its energy (from the
import register where it counts sensibly, else active power times the interval) goes to the
hour holding the interval's middle, so 1-s, 15-min and hourly meters fill the same hours.
An hour closes for a meter when a reading reaches the hour's end or one of a later hour
arrives, or when data time has passed the hour by the meter's silence limit. A
transformer's hour closes when every meter on it has closed that hour (or when it is
overdue); its balance then compares the check meter with the sum of its customers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numba
import numpy as np
import numpy.typing as npt

from detectors.compiled import phase_sum_compiled
from meterguard.model import QUANTITY_INDEX, FloatArray, IntArray, ReadingBatch

if TYPE_CHECKING:
    from detectors.context import FleetArrays

HOUR_S = 3600.0
#: Hours of transformer balances kept open at once (a balance waits for its slowest meter).
_RING = 8
#: An energy register step above this power over its interval is not believed, W.
_MAX_REGISTER_W = 5e6
_P1, _E_IMP, _E_EXP = QUANTITY_INDEX["p1"], QUANTITY_INDEX["e_imp"], QUANTITY_INDEX["e_exp"]
Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ClosedHours:
    """Meter hours that closed: energy and the data time the meter's readings covered."""

    slot: IntArray
    hour: Int64Array
    wh: FloatArray
    covered_s: FloatArray

    @classmethod
    def none(cls) -> ClosedHours:
        """Return an empty set."""
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))


@dataclass(frozen=True, slots=True)
class Balances:
    """Transformer hours that closed: the check meter's energy against its customers'."""

    transformer: Int64Array
    hour: Int64Array
    feeder_wh: FloatArray
    customers_wh: FloatArray
    #: The customers' hours each counted whatever its sign (import or export): with rooftop
    #: solar their currents, and the losses, stay when the net nearly cancels.
    customers_gross_wh: FloatArray
    #: True when the check meter and every customer covered the whole hour.
    complete: npt.NDArray[np.bool_]

    @classmethod
    def none(cls) -> Balances:
        """Return an empty set."""
        return cls(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, np.bool_),
        )


class HourlyLedger:
    """Accumulates hourly energy per meter and balances per transformer with a check meter."""

    def __init__(self, fleet: FleetArrays, min_coverage: float = 0.8) -> None:
        self.fleet = fleet
        self.min_coverage = min_coverage
        n = len(fleet.transformer)
        self.open_hour = np.full(n, -1, dtype=np.int64)
        self.acc_wh = np.zeros(n)
        self.acc_s = np.zeros(n)
        self.last_register = np.full(n, np.nan)
        self.last_export = np.full(n, np.nan)
        nt = fleet.n_transformers
        has_feeder = np.zeros(nt, dtype=np.bool_)
        has_feeder[fleet.transformer[fleet.feeder & (fleet.transformer >= 0)]] = True
        self.balanced = has_feeder
        #: Per transformer, its meters that have reported: a meter listed but never heard
        #: from does not hold every balance back.
        self.members = np.zeros(nt, dtype=np.int64)
        # Per transformer, a ring of hours being balanced.
        self.ring_hour = np.full((nt, _RING), -1, dtype=np.int64)
        self.ring_closed = np.zeros((nt, _RING), dtype=np.int64)
        self.ring_feeder = np.zeros((nt, _RING))
        self.ring_customers = np.zeros((nt, _RING))
        self.ring_gross = np.zeros((nt, _RING))
        self.ring_short = np.zeros((nt, _RING), dtype=np.int64)
        #: Per transformer, the latest hour whose balance went out (later closes only).
        self.done_hour = np.full(nt, -1, dtype=np.int64)
        self._closed: list[ClosedHours] = []
        self._balances: list[Balances] = []

    # ------------------------------------------------------------ readings

    def add(self, batch: ReadingBatch, dt: FloatArray, order: Int64Array | None = None) -> None:
        """Take the readings of one tick (rows in time order) with the interval each covers.

        `order` has the rows by (meter, time) when the caller has it already.
        """
        if len(batch) == 0:
            return
        if order is None:
            order = np.lexsort((batch.ts, batch.slot))
        slot, hour, wh, span = _rows_compiled(
            batch.values, batch.ts, batch.slot, order, dt, self.last_register, self.last_export
        )
        # A row of an hour already closed (overdue) counts towards the open one.
        current = self.open_hour[slot]
        hour = np.maximum(hour, current)
        while slot.size:
            fresh = current < 0
            if fresh.any():
                # A meter's first hour: nothing to close; it joins its transformer's balance.
                starters = np.unique(slot[fresh])
                joined = self.fleet.transformer[starters]
                np.add.at(self.members, joined[joined >= 0], 1)
                self.open_hour[starters] = np.minimum.reduceat(
                    hour[fresh], np.flatnonzero(np.r_[True, np.diff(slot[fresh]) != 0])
                )
                current = self.open_hour[slot]
            later = _accumulate_compiled(slot, hour, wh, span, current, self.acc_wh, self.acc_s)
            if not later.size:
                break
            slot, hour, wh, span = slot[later], hour[later], wh[later], span[later]
            movers = np.unique(slot)
            self._close(movers.astype(np.int64))
            starts = np.flatnonzero(np.r_[True, np.diff(slot) != 0])
            self.open_hour[movers] = np.minimum.reduceat(hour, starts)
            current = self.open_hour[slot]
        self._close_reached(batch, order)

    def _close_reached(self, batch: ReadingBatch, order: Int64Array) -> None:
        """Close the open hour of every meter whose latest reading reaches that hour's end.

        Each later reading's interval begins where this one ends, so its middle lies past
        the hour: nothing more can fall in it, and waiting for the next reading would hold
        the hour back by one interval (an hour for a meter read hourly).
        """
        by_meter = batch.slot[order]
        latest = np.flatnonzero(np.r_[by_meter[1:] != by_meter[:-1], True])
        slots = by_meter[latest].astype(np.int64)
        reached = batch.ts[order][latest] >= (self.open_hour[slots] + 1).astype(np.float64) * HOUR_S
        done = slots[reached & (self.open_hour[slots] >= 0)]
        if done.size:
            self._close(done)
            self.open_hour[done] += 1

    def _close(self, slots: Int64Array) -> None:
        """Close these meters' open hours: record them, and count them towards transformers."""
        hours = self.open_hour[slots].copy()
        wh = self.acc_wh[slots].copy()
        covered = self.acc_s[slots].copy()
        self._closed.append(ClosedHours(slots.astype(np.int32), hours, wh, covered))
        self.acc_wh[slots] = 0.0
        self.acc_s[slots] = 0.0
        t = self.fleet.transformer[slots].astype(np.int64)
        keep = t >= 0
        keep[keep] = self.balanced[t[keep]]
        keep[keep] = hours[keep] > self.done_hour[t[keep]]
        if not keep.any():
            return
        t, hours, wh, covered = t[keep], hours[keep], wh[keep], covered[keep]
        feeder = self.fleet.feeder[slots[keep]]
        cells = hours % _RING
        taken = self.ring_hour[t, cells]
        for k in np.flatnonzero((taken >= 0) & (taken != hours)).tolist():
            self._emit(int(t[k]), int(cells[k]))  # an older hour still waiting there
        self.ring_hour[t, cells] = hours
        np.add.at(self.ring_feeder, (t, cells), np.where(feeder, wh, 0.0))
        np.add.at(self.ring_customers, (t, cells), np.where(feeder, 0.0, wh))
        np.add.at(self.ring_gross, (t, cells), np.where(feeder, 0.0, np.abs(wh)))
        np.add.at(self.ring_short, (t, cells), covered < self.min_coverage * HOUR_S)
        np.add.at(self.ring_closed, (t, cells), 1)
        full = np.unique(np.stack([t, cells]), axis=1)
        for tt, cc in full.T.tolist():
            if self.ring_hour[tt, cc] >= 0 and self.ring_closed[tt, cc] >= self.members[tt]:
                self._emit(tt, cc)

    def _emit(self, t: int, cell: int) -> None:
        """Send out one transformer hour's balance and free its cell of the ring."""
        hour = int(self.ring_hour[t, cell])
        complete = bool(
            self.ring_closed[t, cell] >= self.members[t] and self.ring_short[t, cell] == 0
        )
        if hour > self.done_hour[t]:
            self._balances.append(
                Balances(
                    np.array([t], np.int64),
                    np.array([hour], np.int64),
                    np.array([self.ring_feeder[t, cell]]),
                    np.array([self.ring_customers[t, cell]]),
                    np.array([self.ring_gross[t, cell]]),
                    np.array([complete]),
                )
            )
            self.done_hour[t] = hour
        self.ring_hour[t, cell] = -1
        self.ring_closed[t, cell] = 0
        self.ring_feeder[t, cell] = 0.0
        self.ring_customers[t, cell] = 0.0
        self.ring_gross[t, cell] = 0.0
        self.ring_short[t, cell] = 0

    # ------------------------------------------------------------ data time

    def expire(self, now: float, silence_s: FloatArray) -> None:
        """Close hours that data time has passed by more than their meter's silence limit."""
        open_end = (self.open_hour + 1).astype(np.float64) * HOUR_S
        overdue = np.flatnonzero((self.open_hour >= 0) & (now >= open_end + silence_s))
        if overdue.size:
            self._close(overdue.astype(np.int64))
            # The next reading opens a later hour; one of the closed hour counts towards it.
            self.open_hour[overdue] += 1
        # A transformer hour some meter never closed (silent all hour) goes out incomplete.
        grace = 3.0 * HOUR_S
        stale = np.argwhere((self.ring_hour >= 0) & (now >= (self.ring_hour + 1) * HOUR_S + grace))
        for t, cell in sorted(stale.tolist(), key=lambda tc: int(self.ring_hour[tc[0], tc[1]])):
            self._emit(int(t), int(cell))

    def take(self) -> tuple[ClosedHours, Balances]:
        """Return the meter hours and transformer balances closed since the last call."""
        closed = self._closed
        balances = self._balances
        self._closed = []
        self._balances = []
        return _join_hours(closed), _join_balances(balances)


def _rows(
    values: FloatArray,
    ts: FloatArray,
    slot: IntArray,
    order: Int64Array,
    dt: FloatArray,
    last_register: FloatArray,
    last_export: FloatArray,
) -> tuple[IntArray, Int64Array, FloatArray, FloatArray]:
    """Return the rows in `order` (by meter, then time): slot, hour, energy, span; compiled.

    The registers' step, where the meter's previous row had them too and the step is
    believable, is the interval's energy; else active power times the interval. Each
    figure is the numpy expression's, in its order of operations; the meters' latest
    register readings are kept for the next batch.
    """
    n = ts.shape[0]
    out_slot = np.empty(n, slot.dtype)
    out_hour = np.empty(n, np.int64)
    out_wh = np.empty(n)
    out_span = np.empty(n)
    for i in range(n):
        r = order[i]
        s = slot[r]
        span = dt[r]
        first = i == 0 or slot[order[i - 1]] != s
        measured = False
        for k in range(3):
            measured |= not math.isnan(values[_P1 + k, r])
        total = phase_sum_compiled(values, _P1, r)
        wh = (total if measured else np.nan) * span / HOUR_S
        imported = (
            values[_E_IMP, r] - (last_register[s] if first else values[_E_IMP, order[i - 1]])
        ) * 1000.0
        exported = (
            values[_E_EXP, r] - (last_export[s] if first else values[_E_EXP, order[i - 1]])
        ) * 1000.0
        limit = _MAX_REGISTER_W * span / HOUR_S
        # Net of the export register where the meter has one (solar customers).
        if imported >= 0 and imported <= limit and span > 0:
            wh = imported - (exported if exported >= 0 and exported <= limit else 0.0)
        usable = math.isfinite(wh) and span > 0
        out_slot[i] = s
        out_hour[i] = math.floor((ts[r] - span / 2.0) / HOUR_S)
        out_wh[i] = wh if usable else 0.0
        out_span[i] = span if usable else 0.0
        if i == n - 1 or slot[order[i + 1]] != s:
            last_register[s] = values[_E_IMP, r]
            last_export[s] = values[_E_EXP, r]
    return out_slot, out_hour, out_wh, out_span


_rows_compiled = cast(
    Callable[..., tuple[IntArray, Int64Array, FloatArray, FloatArray]],
    numba.njit(cache=True)(_rows),
)


def _accumulate(
    slot: IntArray,
    hour: Int64Array,
    wh: FloatArray,
    span: FloatArray,
    current: Int64Array,
    acc_wh: FloatArray,
    acc_s: FloatArray,
) -> Int64Array:
    """Add the rows of each meter's open hour to it; return the other rows; compiled.

    Rows come grouped by meter: each meter's rows are summed from 0 in order, then added,
    as np.bincount's per-meter sums are.
    """
    n = slot.shape[0]
    later = np.empty(n, np.int64)
    k = 0
    i = 0
    while i < n:
        s = slot[i]
        got = False
        total_wh = 0.0
        total_s = 0.0
        while i < n and slot[i] == s:
            if hour[i] == current[i]:
                total_wh += wh[i]
                total_s += span[i]
                got = True
            else:
                later[k] = i
                k += 1
            i += 1
        if got:
            acc_wh[s] += total_wh
            acc_s[s] += total_s
    return later[:k]


_accumulate_compiled = cast(Callable[..., Int64Array], numba.njit(cache=True)(_accumulate))


#: What most ticks close: nothing (empty arrays, so one shared set will do).
_NO_HOURS = ClosedHours.none()
_NO_BALANCES = Balances.none()


def _join_hours(parts: list[ClosedHours]) -> ClosedHours:
    if not parts:
        return _NO_HOURS
    return ClosedHours(
        np.concatenate([p.slot for p in parts]),
        np.concatenate([p.hour for p in parts]),
        np.concatenate([p.wh for p in parts]),
        np.concatenate([p.covered_s for p in parts]),
    )


def _join_balances(parts: list[Balances]) -> Balances:
    if not parts:
        return _NO_BALANCES
    return Balances(
        np.concatenate([p.transformer for p in parts]),
        np.concatenate([p.hour for p in parts]),
        np.concatenate([p.feeder_wh for p in parts]),
        np.concatenate([p.customers_wh for p in parts]),
        np.concatenate([p.customers_gross_wh for p in parts]),
        np.concatenate([p.complete for p in parts]),
    )
