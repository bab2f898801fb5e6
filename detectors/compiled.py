"""Compiled helpers of the engine's hot path, giving the same bits as the numpy they replace.

A 60-s batch of a thousand meters is a few thousand values per detector: there the fixed
cost of each numpy call, not the arithmetic, is the time. These passes do the same
arithmetic in one compiled loop, in numpy's order of operations, so that every figure
(and so every alert) is bit for bit what the numpy expression gave.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numba
import numpy as np
import numpy.typing as npt

from detectors.base import CLEAR, HOLDS

FloatArray = npt.NDArray[np.float64]
_HOLDS, _CLEAR = int(HOLDS), int(CLEAR)
Int64Array = npt.NDArray[np.int64]

#: What np.nan_to_num turns an infinity into.
_BIGGEST = float(np.finfo(np.float64).max)
#: numpy sums blocks of up to this many values with eight running sums (pairwise_sum).
_PAIRWISE_BLOCK = 128


def _pairwise(a: FloatArray, lo: int, hi: int) -> float:
    """Sum a[lo:hi] as numpy's pairwise summation does."""
    n = hi - lo
    if n < 8:
        res = -0.0
        for i in range(lo, hi):
            res += a[i]
        return float(res)
    if n <= _PAIRWISE_BLOCK:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i = lo + 8
        stop = hi - n % 8
        while i < stop:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < hi:
            res += a[i]
            i += 1
        return float(res)
    half = n // 2
    half -= half % 8
    return float(_pairwise_compiled(a, lo, lo + half) + _pairwise_compiled(a, lo + half, hi))


_pairwise_compiled = cast(
    Callable[[FloatArray, int, int], float], numba.njit(cache=True)(_pairwise)
)


def nan_to_num(x: float) -> float:
    """Return x as np.nan_to_num gives it: NaN as 0, infinities as the largest floats."""
    if math.isnan(x):
        return 0.0
    if math.isinf(x):
        return _BIGGEST if x > 0 else -_BIGGEST
    return x


nan_to_num_compiled = cast(Callable[[float], float], numba.njit(cache=True)(nan_to_num))


def phase_sum(values: FloatArray, first: int, r: int) -> float:
    """Return np.nansum over the three phase rows from `first` at row r (in its order)."""
    total = 0.0
    for k in range(3):
        v = values[first + k, r]
        part = 0.0 if math.isnan(v) else v
        total = part if k == 0 else total + part
    return total


phase_sum_compiled = cast(
    Callable[[FloatArray, int, int], float], numba.njit(cache=True)(phase_sum)
)


def reduce_sum(a: FloatArray, lo: int, hi: int) -> float:
    """Return np.add.reduceat's sum of a[lo:hi] (hi > lo): the first value, then the rest."""
    if hi - lo == 1:
        return float(a[lo])
    return float(a[lo] + _pairwise_compiled(a, lo + 1, hi))


reduce_sum_compiled = cast(
    Callable[[FloatArray, int, int], float], numba.njit(cache=True)(reduce_sum)
)


def reduce_max(a: FloatArray, lo: int, hi: int) -> float:
    """Return np.maximum.reduceat's maximum of a[lo:hi] (hi > lo): NaN wins."""
    m = a[lo]
    for i in range(lo + 1, hi):
        v = a[i]
        if not (m >= v or math.isnan(m)):
            m = v
    return float(m)


reduce_max_compiled = cast(
    Callable[[FloatArray, int, int], float], numba.njit(cache=True)(reduce_max)
)


def sorted_by(major: Int64Array, minor: FloatArray) -> Int64Array:
    """Return the positions ordered by (major, minor), ties in position order; compiled.

    What np.lexsort((minor, major)) gives, by a bottom-up merge sort: numba's own stable
    argsort takes seconds to compile, and every process compiles it once.
    """
    n = major.shape[0]
    order = np.arange(n)
    spare = np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j = lo, mid
            for k in range(lo, hi):
                if j >= hi:
                    take_left = True
                elif i >= mid:
                    take_left = False
                else:
                    a, b = order[i], order[j]
                    # Left wins ties: the earlier position stays first (stable).
                    take_left = major[a] < major[b] or (
                        major[a] == major[b] and not minor[b] < minor[a]
                    )
                if take_left:
                    spare[k] = order[i]
                    i += 1
                else:
                    spare[k] = order[j]
                    j += 1
        order, spare = spare, order
        width *= 2
    return order


sorted_by_compiled = cast(
    Callable[[Int64Array, FloatArray], Int64Array], numba.njit(cache=True)(sorted_by)
)


def triage(
    holds: npt.NDArray[np.int8],
    ts: FloatArray,
    slot: npt.NDArray[np.int32],
    loss_w: FloatArray,
    dt: FloatArray,
    magnitude: FloatArray,
    score: FloatArray,
    state: FloatArray,
    raised: npt.NDArray[np.bool_],
    clear_after: FloatArray,
    update_every: float,
    fast: bool,
) -> tuple[Int64Array, Int64Array, Int64Array, npt.NDArray[np.bool_]]:
    """Sort a lifecycle's verdicts by meter and apply the common case in place; compiled.

    Rows looked at: those that hold, and clear ones from the meter's `clears_at` (state
    row 0) on. They are ordered by (slot, time) as np.lexsort orders them. A meter whose
    open alert held on every row (when `fast`) has its figures updated here, in the
    rows of `state`: clears_at, kwh_lost, held_s, last_hold, peak_magnitude, confidence,
    last_event_ts, with the engine's own order of operations. Returns the order, and per
    meter left to Python (in slot order) its rows order[lo:hi] and whether it only owes
    an update event (else its rows take the long path).
    """
    n = holds.shape[0]
    clears_at = state[0]
    look = np.empty(n, np.int64)
    m = 0
    for r in range(n):
        h = holds[r]
        if h == _HOLDS or (h == _CLEAR and ts[r] >= clears_at[slot[r]]):
            look[m] = r
            m += 1
    look = look[:m]
    major = np.empty(m, np.int64)
    minor = np.empty(m)
    for i in range(m):
        major[i] = slot[look[i]]
        minor[i] = ts[look[i]]
    ranked = sorted_by_compiled(major, minor)
    order = np.empty(m, np.int64)
    for i in range(m):
        order[i] = look[ranked[i]]
    credit = np.empty(m)
    span = np.empty(m)
    peaks = np.empty(m)
    scores = np.empty(m)
    for i in range(m):
        r = order[i]
        credit[i] = loss_w[r] * dt[r]
        span[i] = dt[r]
        peaks[i] = magnitude[r]
        scores[i] = score[r]
    lo_out = np.empty(m, np.int64)
    hi_out = np.empty(m, np.int64)
    update_only = np.empty(m, np.bool_)
    k = 0
    lo = 0
    while lo < m:
        s = slot[order[lo]]
        hi = lo + 1
        while hi < m and slot[order[hi]] == s:
            hi += 1
        all_held = True
        for i in range(lo, hi):
            if holds[order[i]] != _HOLDS:
                all_held = False
        if not (fast and raised[s] and all_held):
            lo_out[k], hi_out[k], update_only[k] = lo, hi, False
            k += 1
            lo = hi
            continue
        state[1, s] += reduce_sum_compiled(credit, lo, hi) / 3.6e6
        state[2, s] += reduce_sum_compiled(span, lo, hi)
        last_ts = ts[order[hi - 1]]
        if last_ts > state[3, s]:
            state[3, s] = last_ts
        clears_at[s] = state[3, s] + clear_after[s]
        peak = reduce_max_compiled(peaks, lo, hi)
        if peak > state[4, s]:
            state[4, s] = peak
        best = reduce_max_compiled(scores, lo, hi)
        if best > state[5, s]:
            state[5, s] = best
        if state[3, s] - state[6, s] >= update_every:
            lo_out[k], hi_out[k], update_only[k] = lo, hi, True
            k += 1
        lo = hi
    return order, lo_out[:k], hi_out[:k], update_only[:k]


triage_compiled = cast(
    Callable[..., tuple[Int64Array, Int64Array, Int64Array, npt.NDArray[np.bool_]]],
    numba.njit(cache=True)(triage),
)


def by_meter(slot: npt.NDArray[np.int32], n_slots: int) -> Int64Array:
    """Return the rows ordered by slot, in their own order within a slot; compiled.

    The stable np.argsort(slot), by counting: on rows in time order it is also
    np.lexsort((ts, slot)).
    """
    starts = np.zeros(n_slots + 1, np.int64)
    for s in slot:
        starts[s + 1] += 1
    for s in range(n_slots):
        starts[s + 1] += starts[s]
    order = np.empty(slot.shape[0], np.int64)
    for r in range(slot.shape[0]):
        s = slot[r]
        order[starts[s]] = r
        starts[s] += 1
    return order


by_meter_compiled = cast(
    Callable[[npt.NDArray[np.int32], int], Int64Array], numba.njit(cache=True)(by_meter)
)


def gaps(
    ts: FloatArray,
    slot: npt.NDArray[np.int32],
    order: Int64Array,
    last_ts: FloatArray,
    silence_s: FloatArray,
    interval_s: FloatArray,
    limits: FloatArray,
) -> tuple[FloatArray, Int64Array, FloatArray]:
    """Return each row's covered interval and learn the meters' intervals; compiled.

    A reading covers the time since the same meter's previous one (its latest before the
    batch for its first row), unless that gap was a silence: then it covers nothing. The
    meters' latest times move on in place. Each meter's shortest gap up to the longest
    interval (limits: that, the shortest silence, intervals per silence) moves its usual
    interval a step on a log scale: old * ratio ** rate with the ratio clipped to 0.5-2.
    A meter whose interval is new or unchanged (ratio 1, and 1 ** rate is 1) is updated
    here; the others come back with their ratio, for numpy's power (its SIMD power is not
    libm's, bit for bit) and the caller to finish.
    """
    max_interval_s, min_silence_s, silence_intervals = limits[0], limits[1], limits[2]
    n = ts.shape[0]
    dt = np.empty(n)
    moved = np.empty(n, np.int64)
    ratios = np.empty(n)
    k = 0
    shortest = np.inf
    latest = -np.inf
    for i in range(n):
        r = order[i]
        s = slot[r]
        if i == 0 or slot[order[i - 1]] != s:
            before = last_ts[s]
            latest = ts[r]
            shortest = np.inf
        else:
            before = ts[order[i - 1]]
            latest = max(latest, ts[r])
        gap = ts[r] - before
        known = math.isfinite(gap) and gap > 0
        dt[r] = gap if known and gap <= silence_s[s] else 0.0
        if known and gap <= max_interval_s and gap < shortest:
            shortest = gap
        if i < n - 1 and slot[order[i + 1]] == s:
            continue
        last_ts[s] = max(last_ts[s], latest)
        if not math.isfinite(shortest):
            continue
        old = interval_s[s]
        if math.isfinite(old):
            ratio = min(max(shortest / old, 0.5), 2.0)
            if ratio != 1.0:
                moved[k], ratios[k] = s, ratio
                k += 1
                continue
        else:
            interval_s[s] = shortest
        silence_s[s] = max(min_silence_s, silence_intervals * interval_s[s])
    return dt, moved[:k], ratios[:k]


gaps_compiled = cast(
    Callable[..., tuple[FloatArray, Int64Array, FloatArray]], numba.njit(cache=True)(gaps)
)


def mark_seen(values: FloatArray, slot: npt.NDArray[np.int32], seen: Int64Array) -> None:
    """Set, per row's meter, the bit of each quantity the row has a value of; compiled."""
    bits = np.zeros(slot.shape[0], np.int64)
    for q in range(values.shape[0]):  # quantity by quantity: each is one contiguous row
        for r in range(slot.shape[0]):
            if math.isfinite(values[q, r]):
                bits[r] |= 1 << q
    for r in range(slot.shape[0]):
        seen[slot[r]] |= bits[r]


mark_seen_compiled = cast(Callable[..., None], numba.njit(cache=True)(mark_seen))


def scan(
    ts: FloatArray, slot: npt.NDArray[np.int32], last_ts: FloatArray, tick_s: float
) -> tuple[bool, float, Int64Array]:
    """Look over a batch's times once; compiled.

    Returns whether every row has a finite time not before its meter's latest, the
    latest time (-inf for none), and, when the times are in order, where they cross a
    tick (np.floor(ts / tick_s) changes; the rows' count closes the list) and else an
    empty list.
    """
    n = ts.shape[0]
    fine = True
    latest = -np.inf
    ordered = True
    for r in range(n):
        t = ts[r]
        if not (math.isfinite(t) and t >= last_ts[slot[r]]):
            fine = False
        if t > latest:
            latest = t
        if r and t < ts[r - 1]:
            ordered = False
    bounds = np.empty(n + 2 if ordered else 0, np.int64)
    if not ordered:
        return fine, latest, bounds
    k = 1
    bounds[0] = 0
    for r in range(1, n):
        if math.floor(ts[r] / tick_s) != math.floor(ts[r - 1] / tick_s):
            bounds[k] = r
            k += 1
    bounds[k] = n
    return fine, latest, bounds[: k + 1]


scan_compiled = cast(Callable[..., tuple[bool, float, Int64Array]], numba.njit(cache=True)(scan))


def quiet(
    holds: npt.NDArray[np.int8], ts: FloatArray, slot: npt.NDArray[np.int32], clears_at: FloatArray
) -> bool:
    """Return whether no verdict needs a look: none holds, no clear one is due; compiled."""
    for r in range(holds.shape[0]):
        h = holds[r]
        if h == _HOLDS or (h == _CLEAR and ts[r] >= clears_at[slot[r]]):
            return False
    return True


quiet_compiled = cast(Callable[..., bool], numba.njit(cache=True)(quiet))
