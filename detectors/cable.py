"""Cable drop: how far a meter's voltage falls per ampere it meters, reading to reading.

A service cable drops voltage with the current that flows through it (tens of milliohms
for a single-phase service, a few for a three-phase one). A tap before the meter draws its
current through the same cable, so the voltage still falls with the true current while
the meter sees only its share: the slope of the voltage's change against the metered
current's change, between one reading and the next, grows by the inverse of that share.
The supply's own voltage moves between readings as well, which is noise to this slope: at
minute readings a day of them gives the slope to a few per cent, at 15 minutes or more it
says little, and the slope's standard error tells which, so the evidence is used only
where it is precise. The load's current is taken as its active power over the nominal
voltage: a constant-power load draws more current when the supply sags, which would read
as a steep cable of the wrong cause, while its power stays put.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.context import phase_block
from meterguard.model import FloatArray, ReadingBatch

HOUR_S = 3600.0
#: Readings further apart than this are not paired: the supply moves too much between.
MAX_PAIR_S = HOUR_S
#: A voltage step larger than this between two readings is the supply's (a sag, a tap
#: changer, an outage), not the meter's own load: the pair is left out.
MAX_STEP_V = 8.0
#: Only a step of at least this much (A, at nominal voltage) is the meter's own load
#: switching; smaller ones are mostly noise.
MIN_STEP_A = 0.5
#: A cable dropping less than this per metered ampere (ohm) tells nothing of a tap: a
#: three-phase service of a few milliohms is below what the supply's swings let through.
MIN_OHM = 0.015
#: The steepening the cable's sum looks for: a third of the load left unmetered.
SOUGHT_RATIO = 1.5
#: The most evidence one hour adds to the sum (log-likelihood ratio): never one hour alone.
MAX_HOURLY_LLR = 3.0
#: The sum past which the cable has steepened (a likelihood ratio of e^12 for the tap),
#: unless a reading sets its own; twice it is the sum's ceiling whatever the threshold.
STEEPENED_LLR = 12.0
#: The sum counts as left zero above this: its change point.
_NEAR_ZERO = MAX_HOURLY_LLR / 3.0
#: Day-to-day spread of a cable's slope (natural log) assumed before the meter's own is
#: known, and its weight in days. A household's appliances switch on their own; a shop's
#: load ramps with its neighbours', whose drop on the shared feeder then counts as its own.
PRIOR_DISPERSION = 0.15
PRIOR_DAYS = 2.0
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class CableDrop:
    """Per meter and hour: the sums of each reading pair's voltage and current changes."""

    def __init__(
        self,
        nominal_v: FloatArray,
        ring_hours: int,
        first_days: int = 1,
        threshold: float = STEEPENED_LLR,
    ) -> None:
        meters = nominal_v.size
        self.nominal_v = nominal_v
        self.first_days = first_days
        self.threshold = threshold
        self.ring = ring_hours
        self.prev_ts = np.full(meters, -np.inf)
        self.prev_v = np.full((3, meters), np.nan)
        self.prev_i = np.full((3, meters), np.nan)
        # Per meter and hour (a ring): sum of dV*dI, dI^2, dV^2, and the pair count.
        self.sums = np.zeros((4, meters, ring_hours))
        self.hour = np.full((meters, ring_hours), -1, dtype=np.int64)
        # The same summed over the hours learned as the meter's normal.
        self.base = np.zeros((4, meters))
        # A one-sided CUSUM, hour by hour, of the evidence for a steeper cable (steepened
        # past `threshold`), and the hour it last left near zero (-1: near zero).
        self.evidence = np.zeros(meters)
        self.since = np.full(meters, -1, dtype=np.int64)
        # The learned hours of the day being gathered, and each day's slope against the
        # learned one: the meter's own day-to-day variation of its cable's slope.
        self.day = np.zeros((4, meters))
        self.day_hours = np.zeros(meters, dtype=np.int64)
        self.log_sq = np.zeros(meters)
        self.days = np.zeros(meters)

    def add(self, batch: ReadingBatch) -> None:
        """Pair each reading with the meter's previous one and add the changes to its hour."""
        if len(batch):
            amps = phase_block(batch, "p1") / self.nominal_v[batch.slot][None, :]
            self.add_rows(batch.slot, batch.ts, phase_block(batch, "v1"), amps)

    def add_rows(
        self, slots: npt.NDArray[np.integer[Any]], ts: FloatArray, volts: FloatArray,
        amps: FloatArray,
    ) -> None:  # fmt: skip
        """Add readings given as columns: meter slots, times, volts and amperes (3, rows)."""
        order = np.lexsort((ts, slots))
        slot: Int64Array = slots[order].astype(np.int64)
        ts = ts[order]
        volts = volts[:, order]
        amps = amps[:, order]
        # The previous reading: the row before in this batch if of the same meter, else
        # the last one kept from earlier batches.
        same = np.zeros(slot.size, dtype=np.bool_)
        same[1:] = slot[1:] == slot[:-1]
        shifted_ts = np.concatenate([[np.nan], ts[:-1]])
        prev_ts = np.where(same, shifted_ts, self.prev_ts[slot])
        prev_v = np.where(same, _shifted(volts), self.prev_v[:, slot])
        prev_i = np.where(same, _shifted(amps), self.prev_i[:, slot])
        gap = ts - prev_ts
        with np.errstate(invalid="ignore"):
            dv = volts - prev_v
            di = amps - prev_i
            usable = np.isfinite(dv) & np.isfinite(di) & (np.abs(dv) <= MAX_STEP_V)
            usable &= np.abs(di) >= MIN_STEP_A
            usable &= ((gap > 0) & (gap <= MAX_PAIR_S))[None, :]
        dv = np.where(usable, dv, 0.0)
        di = np.where(usable, di, 0.0)
        figures = np.stack([(dv * di).sum(axis=0), (di * di).sum(axis=0), (dv * dv).sum(axis=0),
                            usable.sum(axis=0).astype(np.float64)])  # fmt: skip
        rows = np.flatnonzero(usable.any(axis=0))
        if rows.size:
            hour = np.floor(ts[rows] / HOUR_S).astype(np.int64)
            self._accumulate(slot[rows], hour, figures[:, rows])
        # Keep each meter's latest reading (a reading older than the kept one is a clock
        # that went back: it pairs with nothing).
        last = np.flatnonzero(np.append(slot[1:] != slot[:-1], True))
        newer = ts[last] > self.prev_ts[slot[last]]
        keep, at = slot[last][newer], last[newer]
        self.prev_ts[keep] = ts[at]
        self.prev_v[:, keep] = volts[:, at]
        self.prev_i[:, keep] = amps[:, at]

    def _accumulate(self, slot: Int64Array, hour: Int64Array, figures: FloatArray) -> None:
        """Add each pair's figures to its meter's ring cell, emptying cells of older hours.

        Rows come sorted by meter and time, so each (meter, hour) is one run of rows: summed
        with one reduceat, each cell is then touched once.
        """
        first = np.flatnonzero(
            np.concatenate([[True], (slot[1:] != slot[:-1]) | (hour[1:] != hour[:-1])])
        )
        sums = np.add.reduceat(figures, first, axis=1)
        slot, hour = slot[first], hour[first]
        cell = hour % self.ring
        stale = self.hour[slot, cell] != hour
        self.sums[:, slot[stale], cell[stale]] = 0.0
        self.hour[slot[stale], cell[stale]] = hour[stale]
        self.sums[:, slot, cell] += sums

    def learn(self, meters: Int64Array, hour: int) -> None:
        """Add the meters' figures of `hour` to what is known of their cables.

        Not while the cable's own sum suspects the hour: a tap the meter's energy does not
        show must not become its cable's normal.
        """
        cell = hour % self.ring
        suspect = (self.since[meters] >= 0) & (hour >= self.since[meters])
        held = meters[(self.hour[meters, cell] == hour) & ~suspect]
        self.base[:, held] += self.sums[:, held, cell]
        self.day[:, held] += self.sums[:, held, cell]
        self.day_hours[held] += 1
        full = held[self.day_hours[held] >= 24]
        if full.size:
            day, _ = slope(self.day[:, full])
            usual, _ = slope(self.base[:, full])
            with np.errstate(invalid="ignore", divide="ignore"):
                deviation = np.log(day / usual)
            counted = np.isfinite(deviation) & (usual > 0)
            self.log_sq[full[counted]] += deviation[counted] ** 2
            self.days[full[counted]] += 1.0
            self.day[:, full] = 0.0
            self.day_hours[full] = 0

    def recent(self, meters: Int64Array, first: Int64Array, last: int) -> FloatArray:
        """Return the meters' figures summed over the hours `first` to `last`, shape (4, m)."""
        hours = last - np.arange(self.ring)
        cells = hours % self.ring
        within = (self.hour[meters][:, cells] == hours[None, :]) & (
            hours[None, :] >= first[:, None]
        )
        out: FloatArray = (self.sums[:, meters][:, :, cells] * within[None, :, :]).sum(axis=2)
        return out

    def advance(self, meters: Int64Array, hour: int) -> None:
        """Add each meter's `hour` to its sum of evidence for a cable steepened by a tap.

        Per hour, the log-likelihood ratio of the pairs' voltage drops under a slope
        SOUGHT_RATIO times the learned one against the learned one, with the learned
        residual spread; capped, so that a single burst cannot pass the threshold alone.
        """
        sxy, sxx, _, count = self.recent(meters, np.full(meters.size, hour), hour)
        learned = self.learned(meters)
        ohm, error = slope(learned)
        variance = _residual_variance(learned)
        with np.errstate(invalid="ignore", divide="ignore"):
            known = (ohm >= MIN_OHM) & (ohm >= 5.0 * error) & (variance > 0) & (count > 0)
            step = (SOUGHT_RATIO - 1.0) * ohm
            excess = -sxy - ohm * sxx
            llr = (step * excess - 0.5 * step * step * sxx) / variance
        llr = np.where(known, np.minimum(llr, MAX_HOURLY_LLR), 0.0)
        before = self.evidence[meters]
        after = np.clip(before + llr, 0.0, 2.0 * STEEPENED_LLR)
        self.evidence[meters] = after
        # The change point: the hour the sum last rose from near zero (an hour of modest
        # evidence does not start it, so that the steepening is not dated early).
        starting = (after > _NEAR_ZERO) & (self.since[meters] < 0)
        self.since[meters[starting]] = hour
        self.since[meters[after <= _NEAR_ZERO]] = -1

    def steepened(self, meters: Int64Array) -> BoolArray:
        """Return whether each meter's sum of evidence is past this reading's threshold."""
        out: BoolArray = self.evidence[meters] >= self.threshold
        return out

    def steepening(
        self, meters: Int64Array, first: Int64Array, last: int
    ) -> tuple[FloatArray, BoolArray]:
        """Return how much steeper each cable is over `first`-`last` than learned, and if surely.

        Surely: the learned slope 5 standard errors and MIN_OHM at least, the recent one known
        to a quarter of it (where the supply's swings between readings swamp the cable, at
        15-minute readings, the error estimate itself is not to be trusted), steeper by 4
        combined standard errors, and by 3 of the meter's day-to-day spreads of its slope
        (0.1 at least, in natural log).
        """
        now, now_error = slope(self.recent(meters, first, last))
        usual, usual_error = slope(self.learned(meters))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = now / usual
            sure = (usual >= MIN_OHM) & (usual >= 5.0 * usual_error)
            sure &= now_error <= 0.25 * usual
            sure &= (now - usual) >= 4.0 * np.hypot(now_error, usual_error)
            sure &= np.log(ratio) >= 3.0 * np.maximum(self.dispersion(meters), 0.1)
        return ratio, sure

    def dispersion(self, meters: Int64Array) -> FloatArray:
        """Return each meter's day-to-day spread of its slope (natural log).

        NaN until `first_days` whole days are known: before, the prior alone would speak.
        """
        days = self.days[meters]
        variance = (PRIOR_DISPERSION**2 * PRIOR_DAYS + self.log_sq[meters]) / (PRIOR_DAYS + days)
        out: FloatArray = np.where(days >= self.first_days, np.sqrt(variance), np.nan)
        return out

    def learned(self, meters: Int64Array) -> FloatArray:
        """Return the meters' figures over their learned hours, shape (4, m)."""
        out: FloatArray = self.base[:, meters]
        return out


def slope(figures: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the voltage drop per metered ampere (ohm) and its standard error, per meter.

    The least-squares slope of -dV on dI through the origin, and its error from the
    residual spread of the pairs; NaN where there are fewer than 10 pairs or no current
    change.
    """
    sxy, sxx, _, count = figures
    with np.errstate(invalid="ignore", divide="ignore"):
        ohm = np.where(sxx > 0, -sxy / sxx, np.nan)
        error = np.sqrt(_residual_variance(figures) / sxx)
    enough = (count >= 10) & (sxx > 0)
    return np.where(enough, ohm, np.nan), np.where(enough, error, np.nan)


def _residual_variance(figures: FloatArray) -> FloatArray:
    """Return the spread of a pair's voltage change about the slope's line (V squared)."""
    sxy, sxx, syy, count = figures
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.maximum(syy - np.where(sxx > 0, sxy * sxy / sxx, 0.0), 0.0)
        out: FloatArray = np.where(count >= 10, residual / np.maximum(count - 1.0, 1.0), np.nan)
    return out


def _shifted(block: FloatArray) -> FloatArray:
    """Return the columns of `block` moved one to the right, the first NaN."""
    out = np.full_like(block, np.nan)
    out[:, 1:] = block[:, :-1]
    return out
