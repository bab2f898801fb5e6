"""Supply reference: each transformer phase's voltage, and the phase a single-phase meter is on.

The supply's voltage moves by a volt or more between quarter-hour readings, which buries a
service cable's drop of a few tenths of a volt. Every meter on one transformer phase sees
the same supply, so its voltage less that phase's voltage at the same instant leaves the
meter's own cable. A phase's voltage is taken as the median of the transformer's
three-phase customers read at the same instant (their thick cables drop a few millivolts).
The registry does not say which phase a single-phase meter is on: it is found as the phase
whose voltage changes the meter's own follow while its load stands still (of those it
surely follows, the one that leaves least of them), judged at the first whole hour
JUDGE_AFTER_H after its first reading (an hour later each time it is not clear), and kept.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.cable import MAX_PAIR_S, MAX_STEP_V, MIN_STEP_A
from detectors.context import FleetArrays, phase_block
from meterguard.model import FloatArray, MeterRegistry, ReadingBatch

HOUR_S = 3600.0
#: Hours of readings before a meter's phase is first judged.
JUDGE_AFTER_H = 6
#: For a phase to be taken, the meter's voltage changes must follow its changes at least
#: this much per volt (1: wholly; measurement noise in the reference lowers it)...
MIN_FOLLOWING = 0.5
#: ... by this many standard errors at least. A meter fed from elsewhere follows no phase.
MIN_T = 6.0
#: Pairs needed before a phase is judged.
MIN_PAIRS = 24
#: A reference meter's voltage outside these shares of nominal is not the supply's (a lost
#: phase, a fault) and is left out of the median.
PLAUSIBLE_SHARE = (0.8, 1.2)
#: Readings of a transformer's meters this close in time are of one instant (s).
INSTANT_S = 10.0
#: Keys pack the transformer above the timestamp in milliseconds (2^42 ms is 139 years).
_TS_BITS = 42
_MAX_TS = (1 << _TS_BITS) / 1000.0
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class SupplyReference:
    """Each transformer phase's voltage per batch, and each single-phase meter's phase."""

    def __init__(self, registry: MeterRegistry) -> None:
        n = len(registry)
        self.trafo = FleetArrays.from_registry(registry).transformer.astype(np.int64)
        self.nominal = registry.float_array(lambda m: m.nominal_v)
        self.is_reference = registry.flag_array(
            lambda m: m.role == "customer" and m.service == "3p4w" and bool(m.transformer)
        )
        self.is_single = registry.flag_array(
            lambda m: m.role == "customer" and m.service == "1p2w" and bool(m.transformer)
        )
        self.phase = np.full(n, -1, dtype=np.int64)
        # The hour (since the epoch) from which the phase applies, and the next hour on
        # whose first reading the phase is judged (-1: no pair seen yet).
        self.from_hour = np.full(n, -1, dtype=np.int64)
        self.judge_hour = np.full(n, -1, dtype=np.int64)
        self.prev_ts = np.full(n, -np.inf)
        self.prev_v = np.full(n, np.nan)
        self.prev_a = np.full(n, np.nan)
        self.prev_ref = np.full((3, n), np.nan)
        # Per meter: sum of dV*dRef for each phase, dRef^2 for each phase, dV^2, pairs.
        self.sums = np.zeros((8, n))

    def referenced(self, batch: ReadingBatch) -> tuple[Int64Array, FloatArray]:
        """Return the batch rows of single-phase meters on a known phase, and their voltage.

        The voltage is the meter's less its phase's at the same instant, plus nominal: the
        drop of the meter's own cable, on the scale of a voltage.
        """
        none = (np.zeros(0, dtype=np.int64), np.zeros(0))
        if not len(batch):
            return none
        single = self.is_single[batch.slot]
        if not single.any():
            return none
        ref = self._phase_voltages(batch)
        self._find_phases(batch, np.flatnonzero(single), ref)
        slot = batch.slot.astype(np.int64)
        phase = self.phase[slot]
        hour = np.floor(batch.ts / HOUR_S).astype(np.int64)
        rows = np.flatnonzero(single & (phase >= 0) & (hour >= self.from_hour[slot]))
        own = phase_block(batch, "v1")[0, rows]
        supply = ref[phase[rows], rows]
        keep = np.isfinite(own) & np.isfinite(supply)
        rows = rows[keep]
        volts: FloatArray = own[keep] - supply[keep] + self.nominal[slot[rows]]
        return rows, volts

    def _phase_voltages(self, batch: ReadingBatch) -> FloatArray:
        """Return, per single-phase row, its transformer's phase voltages at its instant.

        Shape (3, rows); NaN for other rows and where no instant is near.
        The transformer's three-phase customers read within one INSTANT_S of each other are
        one instant, at their mean time; a row takes the instant of its transformer nearest
        to its own time, if within INSTANT_S (meters polled in one round are stamped a
        little apart).
        """
        out = np.full((3, len(batch)), np.nan)
        slot = batch.slot.astype(np.int64)
        in_range = _in_range(batch.ts)
        ref_rows = np.flatnonzero(self.is_reference[slot] & in_range)
        if not ref_rows.size:
            return out
        ref_ts = batch.ts[ref_rows]
        bucket = np.floor(ref_ts / INSTANT_S).astype(np.int64)
        _, inverse = np.unique(
            (self.trafo[slot[ref_rows]] << _TS_BITS) + bucket, return_inverse=True
        )
        groups = int(inverse.max()) + 1
        at_ts = np.bincount(inverse, weights=ref_ts) / np.bincount(inverse)
        keys = self._key(
            self.trafo[slot[ref_rows]][np.unique(inverse, return_index=True)[1]], at_ts
        )
        volts = phase_block(batch, "v1")[:, ref_rows]
        nominal = self.nominal[slot[ref_rows]]
        low, high = PLAUSIBLE_SHARE
        medians = np.full((3, groups), np.nan)
        for k in range(3):
            with np.errstate(invalid="ignore"):
                ok = (volts[k] >= low * nominal) & (volts[k] <= high * nominal)
            group, value = inverse[ok], volts[k][ok]
            order = np.lexsort((value, group))
            group, value = group[order], value[order]
            counts = np.bincount(group, minlength=groups)
            starts = np.cumsum(counts) - counts
            has = counts > 0
            lower = value[(starts + (counts - 1) // 2)[has]]
            upper = value[(starts + counts // 2)[has]]
            medians[k, has] = 0.5 * (lower + upper)
        # Instants sorted by key; each row takes the nearer neighbour of its own key.
        order = np.argsort(keys)
        keys, medians = keys[order], medians[:, order]
        wanted = np.flatnonzero(self.is_single[slot] & in_range)
        key = self._key(self.trafo[slot[wanted]], batch.ts[wanted])
        after = np.minimum(np.searchsorted(keys, key), keys.size - 1)
        before = np.maximum(after - 1, 0)
        nearer = np.where(np.abs(keys[before] - key) < np.abs(keys[after] - key), before, after)
        found = (np.abs(keys[nearer] - key) <= INSTANT_S * 1000.0) & (
            keys[nearer] >> _TS_BITS == key >> _TS_BITS
        )
        out[:, wanted[found]] = medians[:, nearer[found]]
        return out

    @staticmethod
    def _key(trafo: Int64Array, ts: FloatArray) -> Int64Array:
        """Return one integer per (transformer, time in milliseconds), ordered by both.

        Times must be within the range a key holds (`_in_range`).
        """
        ms = np.round(ts * 1000.0).astype(np.int64)
        out: Int64Array = (trafo << _TS_BITS) + ms
        return out

    def _find_phases(self, batch: ReadingBatch, rows: Int64Array, ref: FloatArray) -> None:
        """Add the undecided meters' voltage changes against each phase's; judge those due.

        A meter's phase is judged on its first reading of its judging hour, from the pairs of
        the hours before, so the verdict and the hour it applies from do not depend on how the
        readings were batched.
        """
        slot = batch.slot[rows].astype(np.int64)
        rows = rows[self.phase[slot] < 0]
        if not rows.size:
            return
        order = rows[np.lexsort((batch.ts[rows], batch.slot[rows]))]
        slot = batch.slot[order].astype(np.int64)
        ts = batch.ts[order]
        volts = phase_block(batch, "v1")[0, order]
        amps = phase_block(batch, "p1")[0, order] / self.nominal[slot]
        supply = ref[:, order]
        same = np.zeros(slot.size, dtype=np.bool_)
        same[1:] = slot[1:] == slot[:-1]
        prev_ts = np.where(same, np.concatenate([[np.nan], ts[:-1]]), self.prev_ts[slot])
        prev_v = np.where(same, np.concatenate([[np.nan], volts[:-1]]), self.prev_v[slot])
        prev_a = np.where(same, np.concatenate([[np.nan], amps[:-1]]), self.prev_a[slot])
        shifted = np.full_like(supply, np.nan)
        shifted[:, 1:] = supply[:, :-1]
        prev_ref = np.where(same[None, :], shifted, self.prev_ref[:, slot])
        gap = ts - prev_ts
        with np.errstate(invalid="ignore"):
            dv = volts - prev_v
            dr = supply - prev_ref
            usable = np.isfinite(dv) & np.isfinite(dr).all(axis=0) & (np.abs(dv) <= MAX_STEP_V)
            usable &= (gap > 0) & (gap <= MAX_PAIR_S)
            # Only while the meter's own load stands still: its cable then drops nothing new.
            usable &= np.abs(amps - prev_a) < MIN_STEP_A
        hour = np.floor(ts / HOUR_S).astype(np.int64)
        # A meter's first pair sets its judging hour.
        fresh = usable & (self.judge_hour[slot] < 0)
        if fresh.any():
            first_slot, first_at = np.unique(slot[fresh], return_index=True)
            self.judge_hour[first_slot] = hour[np.flatnonzero(fresh)[first_at]] + JUDGE_AFTER_H + 1
        figures = np.vstack([dv * dr, dr * dr, (dv * dv)[None, :], np.ones((1, dv.size))])
        added = np.zeros(slot.size, dtype=np.bool_)
        while True:
            judge = self.judge_hour[slot]
            take = usable & ~added & (hour < judge) & (self.phase[slot] < 0)
            if take.any():
                taken, inverse = np.unique(slot[take], return_inverse=True)
                for f in range(figures.shape[0]):
                    self.sums[f, taken] += np.bincount(inverse, weights=figures[f, take])
                added |= take
            due = np.unique(slot[(judge >= 0) & (hour >= judge) & (self.phase[slot] < 0)])
            if not due.size:
                break
            self._judge(due)
        # Keep each meter's latest reading (an older one is a clock that went back).
        last = np.flatnonzero(np.append(slot[1:] != slot[:-1], True))
        newer = ts[last] > self.prev_ts[slot[last]]
        keep, at = slot[last][newer], last[newer]
        self.prev_ts[keep] = ts[at]
        self.prev_v[keep] = volts[at]
        self.prev_a[keep] = amps[at]
        self.prev_ref[:, keep] = supply[:, at]

    def _judge(self, meters: Int64Array) -> None:
        """Take each meter's phase where it explains its voltage; else judge it an hour later."""
        cross, ref_sq = self.sums[0:3, meters], self.sums[3:6, meters]
        own_sq, pairs = self.sums[6, meters], self.sums[7, meters]
        # What each phase leaves of the meter's changes: sum of (dV - dRef)^2. Phases that
        # swing together (a common medium-voltage supply) all leave little; the meter's own
        # leaves least.
        left = own_sq[None, :] - 2.0 * cross + ref_sq
        best = left.argmin(axis=0)
        pick = (best, np.arange(meters.size))
        with np.errstate(invalid="ignore", divide="ignore"):
            following = cross[pick] / ref_sq[pick]
            residual = np.maximum(own_sq - cross[pick] * following, 0.0)
            error = np.sqrt(residual / np.maximum(pairs - 1.0, 1.0) / ref_sq[pick])
            clear = (following >= MIN_FOLLOWING) & (following >= MIN_T * error)
        clear &= pairs >= MIN_PAIRS
        taken = meters[clear]
        self.phase[taken] = best[clear]
        self.from_hour[taken] = self.judge_hour[taken]
        self.judge_hour[meters[~clear]] += 1

    def phase_of(self, meters: Int64Array) -> Int64Array:
        """Return the phase (0-2) each meter was found on, -1 where not (yet) known."""
        out: Int64Array = self.phase[meters]
        return out


def _in_range(ts: FloatArray) -> BoolArray:
    """Return which times a key can hold: from 1970 to 2109 (a clock far off is left out)."""
    with np.errstate(invalid="ignore"):
        out: BoolArray = (ts >= 0.0) & (ts < _MAX_TS)
    return out
