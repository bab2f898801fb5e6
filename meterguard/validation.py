"""Physical bounds and clocks: every reading is checked before anything uses it.

A value outside what the meter's service can physically show (a voltage above twice its
nominal, a current far above its CT's rating, active power above V·I, a frequency outside
40-70 Hz, a negative or non-finite register) becomes "not measured", counted per quantity.
A reading dated more than `max_clock_skew_s` ahead of the wall clock (live), before the
year 2000 (a clock reset), or non-finite is refused, counted per meter: a device whose
clock is wrong shows it in its status, and one bad clock never moves the fleet's data time.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from meterguard.model import QUANTITIES, QUANTITY_INDEX, MeterRegistry, ReadingBatch

#: Readings dated before this (2000-01-01) come from a clock that was reset.
EARLIEST_TS = 946_684_800.0


class ValidationSettings(BaseModel):
    """What a reading may say before it is believed."""

    model_config = ConfigDict(extra="forbid")

    max_clock_skew_s: float = Field(
        default=300.0,
        gt=0,
        description="A reading dated more than this ahead of the wall clock is refused (the "
        "device's clock is wrong), counted per meter.",
    )
    max_voltage_ratio: float = Field(
        default=2.0, gt=1, description="Voltages above this multiple of nominal are not measured."
    )
    max_current_a: float = Field(
        default=2000.0,
        gt=0,
        description="Currents above this, A, are not measured (whole-current meters) ...",
    )
    max_ct_ratio: float = Field(
        default=10.0,
        gt=1,
        description="... or above this multiple of the CT rating (CT-connected meters).",
    )
    power_margin: float = Field(
        default=1.25,
        ge=1,
        description="Active or reactive power above this multiple of V·I (plus 50 W) is not "
        "measured.",
    )
    min_frequency_hz: float = Field(default=40.0, gt=0, description="Lowest believable frequency.")
    max_frequency_hz: float = Field(default=70.0, gt=0, description="Highest believable frequency.")


@dataclass(slots=True)
class ValidationReport:
    """What validation changed, kept for /metrics and the meters' status."""

    #: Values set to "not measured", by quantity.
    values_out_of_range: Counter[str] = field(default_factory=Counter)
    #: Readings refused, by reason: clock_ahead, clock_reset, time_not_finite.
    readings_refused: Counter[str] = field(default_factory=Counter)
    #: Readings refused for their time, by meter id (a device whose clock is off).
    clock_off: Counter[str] = field(default_factory=Counter)


class ReadingValidator:
    """Checks batches against the fleet's physical bounds and the wall clock."""

    def __init__(self, registry: MeterRegistry, settings: ValidationSettings | None = None) -> None:
        self.registry = registry
        self.settings = settings or ValidationSettings()
        self.report = ValidationReport()
        s = self.settings
        nominal = registry.float_array(lambda m: m.nominal_v)
        # 3p3w meters report line-to-line voltages.
        line = registry.flag_array(lambda m: m.service == "3p3w")
        self.max_v = nominal * np.where(line, math.sqrt(3.0), 1.0) * s.max_voltage_ratio
        ct = registry.float_array(lambda m: m.ct_primary_a)
        self.max_i = np.where(np.isfinite(ct), ct * s.max_ct_ratio, s.max_current_a)
        self._ids = [m.id for m in registry]

    def check(self, batch: ReadingBatch, wall_now: float | None = None) -> ReadingBatch:
        """Return the batch with unbelievable values blanked and unbelievable rows dropped.

        `wall_now` (live): readings dated more than the skew ahead of it are refused;
        None (replay): the file's own order is the judge of time (the reader checks it).
        """
        if len(batch) == 0:
            return batch
        keep = self._check_time(batch, wall_now)
        if not keep.all():
            batch = batch.take(np.flatnonzero(keep))
            if len(batch) == 0:
                return batch
        values = batch.values
        slot = batch.slot
        s = self.settings
        bad = ~np.isfinite(values) & ~np.isnan(values)  # inf and -inf
        max_v = self.max_v[slot]
        max_i = self.max_i[slot]
        for k in range(3):
            v_row, i_row = QUANTITY_INDEX[f"v{k + 1}"], QUANTITY_INDEX[f"i{k + 1}"]
            bad[v_row] |= (values[v_row] < 0) | (values[v_row] > max_v)
            bad[i_row] |= (values[i_row] < 0) | (values[i_row] > max_i)
        n_row = QUANTITY_INDEX["in"]
        bad[n_row] |= (values[n_row] < 0) | (values[n_row] > max_i)
        with np.errstate(invalid="ignore", over="ignore"):
            for k in range(3):
                v = values[QUANTITY_INDEX[f"v{k + 1}"]]
                i = values[QUANTITY_INDEX[f"i{k + 1}"]]
                # V·I where both are believable, else the meter's own limits.
                v_ok = np.where(bad[QUANTITY_INDEX[f"v{k + 1}"]] | np.isnan(v), max_v, v)
                i_ok = np.where(bad[QUANTITY_INDEX[f"i{k + 1}"]] | np.isnan(i), max_i, i)
                limit = v_ok * i_ok * s.power_margin + 50.0
                for name in (f"p{k + 1}", f"q{k + 1}"):
                    row = QUANTITY_INDEX[name]
                    bad[row] |= np.abs(values[row]) > limit
            f_row = QUANTITY_INDEX["f"]
            bad[f_row] |= (values[f_row] < s.min_frequency_hz) | (
                values[f_row] > s.max_frequency_hz
            )
            for name in ("e_imp", "e_exp"):
                row = QUANTITY_INDEX[name]
                bad[row] |= (values[row] < 0) | (values[row] > 1e12)
        if bad.any():
            values = values.copy()
            values[bad] = np.nan
            counts = bad.sum(axis=1)
            for q, count in zip(QUANTITIES, counts.tolist(), strict=True):
                if count:
                    self.report.values_out_of_range[q] += count
            batch = ReadingBatch(
                ts=batch.ts,
                slot=batch.slot,
                values=values,
                events=batch.events,
                unknown_events=batch.unknown_events,
            )
        return batch

    def _check_time(self, batch: ReadingBatch, wall_now: float | None) -> np.ndarray:
        """Return which rows have a believable time; count the others per meter."""
        ts = batch.ts
        finite = np.isfinite(ts)
        reset = finite & (ts < EARLIEST_TS)
        ahead = np.zeros(len(batch), dtype=np.bool_)
        if wall_now is not None:
            ahead = finite & (ts > wall_now + self.settings.max_clock_skew_s)
        keep: np.ndarray = finite & ~reset & ~ahead
        if keep.all():
            return keep
        report = self.report
        for reason, rows in (
            ("time_not_finite", ~finite),
            ("clock_reset", reset),
            ("clock_ahead", ahead),
        ):
            count = int(rows.sum())
            if count:
                report.readings_refused[reason] += count
                for slot in batch.slot[rows].tolist():
                    report.clock_off[self._ids[slot]] += 1
        return keep


def wall_clock() -> float:
    """Return the wall clock, epoch seconds (a seam for tests)."""
    return time.time()
