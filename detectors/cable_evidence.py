"""Cable evidence: a meter's service cable read against its supply phase where it can be.

Two readings of one cable (detectors/cable.py): each reading against the meter's previous
one, whose supply swings are noise that only minute readings average away, and the same
with its transformer phase's voltage taken off first (detectors/supply_reference.py),
which leaves the cable alone at any cadence but needs the meter's phase found and
three-phase neighbours read at the same instants. Where the referenced reading has learned
the cable's slope surely, it speaks for the meter; elsewhere the plain one does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.cable import MIN_OHM, CableDrop, slope
from detectors.context import phase_block
from detectors.supply_reference import SupplyReference
from meterguard.model import FloatArray, MeterRegistry, ReadingBatch

#: The sum past which the referenced reading says the cable steepened. Lower than the plain
#: reading's: with the supply's swings taken off, the scatter of its pairs is the meter's
#: own noise, which the likelihood ratio models; the plain pairs carry the supply's swings
#: too, whose heavy tails it does not. At quarter-hour readings a household gives a few
#: pairs an hour, and a tap's sum may take days to reach the plain threshold where it
#: reaches this one within hours.
REFERENCED_STEEPENED_LLR = 8.0
Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class CableEvidence:
    """The cable's slope, sum and change point per meter, from the better of its two readings."""

    def __init__(self, registry: MeterRegistry, ring_hours: int) -> None:
        nominal = registry.float_array(lambda m: m.nominal_v)
        self.plain = CableDrop(nominal, ring_hours)
        self.referenced = CableDrop(
            nominal, ring_hours, first_days=0, threshold=REFERENCED_STEEPENED_LLR
        )
        self.supply = SupplyReference(registry)

    def add(self, batch: ReadingBatch) -> None:
        """Add a batch's readings to both readings of each cable."""
        if not len(batch):
            return
        self.plain.add(batch)
        rows, volts = self.supply.referenced(batch)
        if rows.size:
            slot = batch.slot[rows]
            block = np.full((3, rows.size), np.nan)
            block[0] = volts
            amps = np.full((3, rows.size), np.nan)
            amps[0] = phase_block(batch, "p1")[0, rows] / self.plain.nominal_v[slot]
            self.referenced.add_rows(slot, batch.ts[rows], block, amps)

    def learn(self, meters: Int64Array, hour: int) -> None:
        """Add the meters' figures of `hour` to what is known of their cables."""
        self.plain.learn(meters, hour)
        self.referenced.learn(meters, hour)

    def advance(self, meters: Int64Array, hour: int) -> None:
        """Add each meter's `hour` to its sums of evidence for a steepened cable."""
        self.plain.advance(meters, hour)
        self.referenced.advance(meters, hour)

    def by_reference(self, meters: Int64Array) -> BoolArray:
        """Return whether the referenced reading has learned each meter's cable surely.

        Its slope MIN_OHM and 5 standard errors at least. Its day-to-day spread is taken as
        the prior one until a whole day of it is known: free of the supply's swings, the
        slope of the meter's first hours is as good as a later day's.
        """
        ohm, error = slope(self.referenced.learned(meters))
        with np.errstate(invalid="ignore"):
            out: BoolArray = (ohm >= MIN_OHM) & (ohm >= 5.0 * error)
        return out

    def steepened(self, meters: Int64Array) -> BoolArray:
        """Return whether each meter's sum of evidence says its cable steepened."""
        out: BoolArray = np.where(
            self.by_reference(meters),
            self.referenced.steepened(meters),
            self.plain.steepened(meters),
        )
        return out

    def since(self, meters: Int64Array) -> Int64Array:
        """Return the hour each meter's sum last left near zero (-1: near zero)."""
        out: Int64Array = np.where(
            self.by_reference(meters), self.referenced.since[meters], self.plain.since[meters]
        )
        return out

    def steepening(
        self, meters: Int64Array, first: Int64Array, last: int
    ) -> tuple[FloatArray, BoolArray]:
        """Return how much steeper each cable is over `first`-`last` than learned, and if surely."""
        referenced = self.by_reference(meters)
        ratio, sure = self.plain.steepening(meters, first, last)
        if referenced.any():
            pick = np.flatnonzero(referenced)
            ratio[pick], sure[pick] = self.referenced.steepening(meters[pick], first[pick], last)
        return ratio, sure
