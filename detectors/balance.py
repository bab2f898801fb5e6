"""The normal gap between a transformer's check meter and its customers, learned per hour.

The gap is technical losses (I²R in the service cables and the low-voltage backbone),
customer CTs that read low at light load and unmetered loads such as street lighting. It
follows the time of day and the kind of day (rooftop solar at noon, plants idle on
Sundays), so the model keeps, per transformer and per day type (weekday, Saturday, Sunday
or holiday) and hour of the day, the usual gap and feeder load, in watts, with the spread
of the gap around it; a day type not seen yet borrows the same hour of another. Losses grow
with the load, so an hour whose load differs from the usual one moves its expected gap by
the transformer's learned slope of gap against load.

Once a day of clean hours is in, a loss curve takes over: I²R losses are a quadratic of the
current, so the gap is fitted, per transformer, as a quadratic of the hour's energy flows
(the customers' metered energy, import and export alike; least squares with the model's
memory), plus what each hour of the day adds beyond it (a street light at night), with the
spread of its own out-of-sample errors. It holds on every kind of day from the second on,
where a day type's own hours take a week to learn, and its spread is a small fraction of
theirs: the day-to-day swing of the load no longer counts as noise. Where the curve's
spread is not the smaller (the gap follows something else), the hours of the day type stay
in charge. The unexplained energy of an hour is what the model does not expect, judged
against that spread.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meterguard.calendar import DAY_TYPES, STAND_INS
from meterguard.model import FloatArray

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: Clean hours of one day type and hour before it is trusted.
MIN_CELL_SAMPLES = 2
#: The spread is never taken below this share of the load plus this many watts (meter
#: accuracy), nor below a share of the usual gap itself.
_FLOOR_SHARE, _FLOOR_W, _FLOOR_OF_GAP = 0.002, 50.0, 0.1
#: Clean hours the loss curve needs before it judges, and before its errors are counted.
_CURVE_MIN_HOURS, _CURVE_ERRORS_FROM = 24, 12
#: Weight of a new error in the curve's spread (about two days).
_CURVE_ERROR_RATE = 1.0 / 48.0
#: Ridge on the curve's scaled terms: keeps a first day of nearly constant load solvable.
_CURVE_RIDGE = 1e-3
#: The curve's terms: 1, the customers' gross flow and its square.
_TERMS = 3


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
        self.curve = LossCurve(n_transformers, self.decay, self.rate)

    def _cells(
        self, t: Int64Array, day_type: Int64Array, hour: Int64Array
    ) -> tuple[Int64Array, BoolArray]:
        """Return the day type each hour is judged by (itself or a stand-in), and if any."""
        chosen = np.full(t.size, -1, dtype=np.int64)
        for d in range(DAY_TYPES):
            mine = day_type == d
            for other in STAND_INS[d]:
                free = mine & (chosen < 0)
                known = self.n[t, other, hour] >= MIN_CELL_SAMPLES
                chosen[free & known] = other
        return np.maximum(chosen, 0), chosen >= 0

    def expected(
        self,
        t: Int64Array,
        load_w: FloatArray,
        gross_w: FloatArray,
        day_type: Int64Array,
        hour: Int64Array,
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Return the expected gap and the spread to judge it by, W, and if it is learned.

        An hour of a day type seen often enough is judged by its own usual gap, moved by
        the transformer's slope for a load unlike the usual one (by at most half the gap),
        and its own spread. One whose day type is new (the first Sunday, the first
        holiday) borrows the same hour of another day type, but its spread is the loss
        allowance of the larger of the two loads: the loads differ too much to tell more.
        Before any day type's hour is known, the allowance stands for both. Once the loss
        curve has a day of clean hours it judges instead (`gross_w`: the customers' energy
        counted whatever its sign), unless the day type's own hour has the smaller spread.
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
        curve, curve_spread, fitted = self.curve.expected(t, gross_w, hour)
        curve_spread = np.maximum(curve_spread, _FLOOR_SHARE * load + _FLOOR_W)
        better = fitted & ~(own & (spread < curve_spread))
        expected = np.where(better, curve, expected)
        spread = np.where(better, curve_spread, spread)
        return expected, np.maximum(spread, _FLOOR_W), known | fitted

    def learn(
        self,
        t: Int64Array,
        load_w: FloatArray,
        gross_w: FloatArray,
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
            self.curve.learn(tk, float(gross_w[k]), float(gap_w[k]), hk)
            self.load_w[tk, dk, hk] += rate * (float(load_w[k]) - self.load_w[tk, dk, hk])
            if n:
                self.var[tk, dk, hk] += rate * (deviation * deviation - self.var[tk, dk, hk])
            self.n[tk, dk, hk] = n + 1


class LossCurve:
    """Per transformer: the gap as a quadratic of the hour's energy flows, plus each hour.

    Its variable is the customers' metered energy counted whatever its sign (import and
    export alike carry current), scaled by the transformer's first load. Not the check
    meter's: a tap raises that too, and the curve would take part of the theft for losses.
    Beyond the flows it has learned the curve goes on along its slope, rising only above
    and, below, never under the straight line to no flow at all: a curve fitted on a day's
    loads says nothing of its far ends, and losses do not turn negative.
    """

    def __init__(self, n_transformers: int, decay: float, rate: float) -> None:
        self.decay = decay
        self.rate = rate
        self.scale = np.zeros(n_transformers)
        self.xtx = np.zeros((n_transformers, _TERMS, _TERMS))
        self.xty = np.zeros((n_transformers, _TERMS))
        self.n = np.zeros(n_transformers, dtype=np.int64)
        self.low = np.full(n_transformers, np.inf)
        self.high = np.full(n_transformers, -np.inf)
        # What each hour of the day adds beyond the curve, and how many hours taught it.
        self.offset = np.zeros((n_transformers, 24))
        self.offset_n = np.zeros((n_transformers, 24), dtype=np.int64)
        # The mean square of the curve's out-of-sample errors as a share of the hour's flow
        # (losses, and their wander, grow with the load), and how many it holds.
        self.var = np.zeros(n_transformers)
        self.errors = np.zeros(n_transformers, dtype=np.int64)

    def _flow(self, t: Int64Array, gross_w: FloatArray) -> FloatArray:
        """Return each hour's scaled gross flow."""
        flow: FloatArray = np.abs(gross_w) / np.maximum(self.scale[t], 1.0)
        return flow

    def _base(self, t: Int64Array, gross_w: FloatArray) -> FloatArray:
        """Return the curve's gap for these flows, W (no hour offset)."""
        eye = np.eye(_TERMS)[None, :, :] * _CURVE_RIDGE
        coef = np.linalg.solve(self.xtx[t] + eye, self.xty[t][:, :, None])[:, :, 0]
        flow = self._flow(t, gross_w)
        inside = np.clip(flow, self.low[t], self.high[t])
        value = coef[:, 0] + coef[:, 1] * inside + coef[:, 2] * inside**2
        slope = coef[:, 1] + 2.0 * coef[:, 2] * inside
        beyond = slope * (flow - inside)
        with np.errstate(invalid="ignore", divide="ignore"):
            towards_zero = value * np.where(inside > 0, flow / inside, 1.0)
        base: FloatArray = np.where(
            flow < inside, np.maximum(value + beyond, towards_zero), value + np.maximum(beyond, 0.0)
        )
        return base

    def _offset(self, t: Int64Array, hour: Int64Array) -> FloatArray:
        """Return each hour of the day's learned offset, shrunk while it has few hours."""
        n = self.offset_n[t, hour]
        shrunk: FloatArray = self.offset[t, hour] * n / (n + 2.0)
        return shrunk

    def expected(
        self, t: Int64Array, gross_w: FloatArray, hour: Int64Array
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Return the curve's expected gap and spread, W, and whether it may judge yet."""
        fitted = (self.n[t] >= _CURVE_MIN_HOURS) & (self.errors[t] >= _CURVE_ERRORS_FROM)
        if not fitted.any():
            zeros = np.zeros(t.size)
            return zeros, zeros, fitted
        expected = self._base(t, gross_w) + self._offset(t, hour)
        return expected, np.sqrt(self.var[t]) * self._weight(t, gross_w), fitted

    def _weight(self, t: Int64Array, gross_w: FloatArray) -> FloatArray:
        """Return the flow an hour's error is counted against (a tenth of the usual at least)."""
        weight: FloatArray = np.maximum(np.abs(gross_w), 0.1 * self.scale[t])
        return weight

    def learn(self, t: int, gross_w: float, gap_w: float, hour: int) -> None:
        """Add one clean hour; its error before learning goes to the spread."""
        if self.scale[t] == 0.0:
            self.scale[t] = max(abs(gross_w), 1000.0)
        tt = np.array([t], dtype=np.int64)
        grosses = np.array([gross_w])
        target = gap_w
        if self.n[t] >= _CURVE_ERRORS_FROM:
            at = np.array([hour], dtype=np.int64)
            base = float(self._base(tt, grosses)[0])
            offset = float(self._offset(tt, at)[0])
            error = gap_w - base - offset
            weight = float(self._weight(tt, grosses)[0])
            if self.errors[t] >= 3:
                # Huber-like: one odd hour moves the curve and its spread by 3 spreads at most.
                bound = 3.0 * max(float(np.sqrt(self.var[t])) * weight, _FLOOR_W)
                error = min(max(error, -bound), bound)
                target = base + offset + error
            k = int(self.errors[t])
            share = (error / weight) ** 2
            self.var[t] += max(1.0 / (k + 1.0), _CURVE_ERROR_RATE) * (share - self.var[t])
            self.errors[t] = k + 1
            n = int(self.offset_n[t, hour])
            step = target - base - float(self.offset[t, hour])
            self.offset[t, hour] += max(1.0 / (n + 1.0), self.rate) * step
            self.offset_n[t, hour] = n + 1
            target -= float(self._offset(tt, at)[0])
        g = float(self._flow(tt, grosses)[0])
        terms = np.array([1.0, g, g * g])
        self.xtx[t] = self.xtx[t] * self.decay + np.outer(terms, terms)
        self.xty[t] = self.xty[t] * self.decay + terms * target
        self.n[t] += 1
        self.low[t] = min(self.low[t], g)
        self.high[t] = max(self.high[t], g)
