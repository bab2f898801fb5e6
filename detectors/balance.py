"""The normal gap between a transformer's check meter and its customers, learned per hour.

The gap is technical losses (I²R in the service cables and the low-voltage backbone),
customer CTs that read low at light load and unmetered loads such as street lighting. It
follows the time of day and the kind of day (rooftop solar at noon, plants idle on
Sundays), so the model keeps, per transformer and per day type (weekday, Saturday, Sunday
or holiday) and hour of the day, the usual gap and feeder load, in watts, with the spread
of the gap around it; a day type not seen yet borrows the same hour of another. Losses grow
with the load, so an hour whose load differs from the usual one moves its expected gap by
the transformer's learned slope of gap against load. The unexplained energy of an hour is
what the model does not expect, judged against that spread.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterguard.calendar import DAY_TYPES, DayType
from meterguard.model import FloatArray

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: Clean hours of one day type and hour before it is trusted.
MIN_CELL_SAMPLES = 2
#: When a day type's hour is not known yet, the same hour of these stands in.
_FALLBACK: dict[int, tuple[int, ...]] = {
    DayType.WEEKDAY: (DayType.WEEKDAY, DayType.SATURDAY, DayType.SUNDAY),
    DayType.SATURDAY: (DayType.SATURDAY, DayType.SUNDAY, DayType.WEEKDAY),
    DayType.SUNDAY: (DayType.SUNDAY, DayType.SATURDAY, DayType.WEEKDAY),
}
#: The spread is never taken below this share of the load plus this many watts (meter
#: accuracy), nor below a share of the usual gap itself.
_FLOOR_SHARE, _FLOOR_W, _FLOOR_OF_GAP = 0.002, 50.0, 0.1


class GapModel:
    """Per transformer, day type and hour: the usual gap and its spread, in watts."""

    def __init__(self, n_transformers: int, learn_days: float, allowance: float) -> None:
        self.allowance = allowance
        self.rate = 1.0 / max(learn_days / 7.0 * 4.0, 1.0)
        shape = (n_transformers, DAY_TYPES, 24)
        self.gap_w = np.zeros(shape)
        self.load_w = np.zeros(shape)
        self.var = np.zeros(shape)
        self.n = np.zeros(shape, dtype=np.int64)
        # Slope of gap against load (deviations from the hour's usual), least squares with
        # a memory of about `learn_days` of clean hours.
        self.decay = float(np.exp(-1.0 / (learn_days * 24.0)))
        self.sxx = np.zeros(n_transformers)
        self.sxy = np.zeros(n_transformers)

    def _cells(
        self, t: Int64Array, day_type: Int64Array, hour: Int64Array
    ) -> tuple[Int64Array, BoolArray]:
        """Return the day type each hour is judged by (itself or a stand-in), and if any."""
        chosen = np.full(t.size, -1, dtype=np.int64)
        for d in range(DAY_TYPES):
            mine = day_type == d
            for other in _FALLBACK[d]:
                free = mine & (chosen < 0)
                known = self.n[t, other, hour] >= MIN_CELL_SAMPLES
                chosen[free & known] = other
        return np.maximum(chosen, 0), chosen >= 0

    def expected(
        self, t: Int64Array, load_w: FloatArray, day_type: Int64Array, hour: Int64Array
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Return the expected gap and the spread to judge it by, W, and if it is learned.

        An hour of a day type seen often enough is judged by its own usual gap, moved by
        the transformer's slope for a load unlike the usual one (by at most half the gap),
        and its own spread. One whose day type is new (the first Sunday, the first
        holiday) borrows the same hour of another day type, but its spread is the loss
        allowance of the larger of the two loads: the loads differ too much to tell more.
        Before any day type's hour is known, the allowance stands for both.
        """
        cell, known = self._cells(t, day_type, hour)
        own = known & (cell == day_type)
        usual = self.gap_w[t, cell, hour]
        usual_load = self.load_w[t, cell, hour]
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = np.where(self.sxx[t] > 0, self.sxy[t] / self.sxx[t], 0.0)
        shift = np.clip(slope * (load_w - usual_load), -0.5 * np.abs(usual), 0.5 * np.abs(usual))
        load = np.abs(load_w)
        floor = np.maximum(_FLOOR_SHARE * load + _FLOOR_W, _FLOOR_OF_GAP * np.abs(usual))
        spread = np.maximum(np.sqrt(self.var[t, cell, hour]), floor)
        borrowed = self.allowance * np.maximum(load, np.abs(usual_load))
        allowance = self.allowance * load
        expected = np.where(known, usual + np.where(own, shift, 0.0), allowance)
        spread = np.where(own, spread, np.where(known, np.maximum(borrowed, spread), allowance))
        # A day type seen once (the second Sunday, a holiday after a Sunday): its one clean
        # hour is the usual gap, judged by the stand-in's spread scaled to this load, doubled.
        once = known & ~own & (self.n[t, day_type, hour] == 1)
        if once.any():
            first = self.gap_w[t, day_type, hour]
            scale = load / np.maximum(np.abs(usual_load), 1.0)
            wide = 2.0 * np.sqrt(self.var[t, cell, hour]) * np.clip(scale, 0.25, 4.0)
            own_floor = np.maximum(_FLOOR_SHARE * load + _FLOOR_W, _FLOOR_OF_GAP * np.abs(first))
            expected = np.where(once, first, expected)
            spread = np.where(once, np.maximum(wide, 2.0 * own_floor), spread)
        return expected, np.maximum(spread, _FLOOR_W), known

    def learn(
        self,
        t: Int64Array,
        load_w: FloatArray,
        gap_w: FloatArray,
        day_type: Int64Array,
        hour: Int64Array,
    ) -> None:
        """Add clean hours (no unexplained energy) to the model."""
        for k in range(t.size):  # one transformer hour at a time: the cells may repeat
            tk, dk, hk = int(t[k]), int(day_type[k]), int(hour[k])
            n = int(self.n[tk, dk, hk])
            if n:
                dx = float(load_w[k] - self.load_w[tk, dk, hk])
                dy = float(gap_w[k] - self.gap_w[tk, dk, hk])
                self.sxx[tk] = self.sxx[tk] * self.decay + dx * dx
                self.sxy[tk] = self.sxy[tk] * self.decay + dx * dy
            rate = max(1.0 / (n + 1.0), self.rate)
            old_gap = self.gap_w[tk, dk, hk]
            deviation = float(gap_w[k]) - old_gap
            if n >= 3:
                # Huber-like: one odd hour (a customer's theft just below the threshold)
                # moves the usual gap and its spread by three spreads at most.
                bound = 3.0 * max(float(np.sqrt(self.var[tk, dk, hk])), _FLOOR_W)
                deviation = min(max(deviation, -bound), bound)
            self.gap_w[tk, dk, hk] = old_gap + rate * deviation
            self.load_w[tk, dk, hk] += rate * (float(load_w[k]) - self.load_w[tk, dk, hk])
            if n:
                self.var[tk, dk, hk] += rate * (deviation * deviation - self.var[tk, dk, hk])
            self.n[tk, dk, hk] = n + 1
