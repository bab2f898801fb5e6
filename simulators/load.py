"""What customers really consume: load shapes per class, appliance bursts, solar output.

All functions take times `t` shaped (T, 1) (epoch seconds, UTC taken as local time) and
return arrays shaped (T, N) or (T, N, 3) in kW; they are pure functions of the seed (and
of the population's calendar, heating and vacations).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulators import noise
from simulators.climate import outdoor_temp_c
from simulators.population import COMMERCIAL, INDUSTRIAL, RESIDENTIAL, FloatArray, Population

DAY_S = 86400.0

# Noise streams, one per random quantity (never reuse one for two purposes).
_S_PEAK_SHIFT = 1
_S_BASE_DRIFT = 2
_S_BURST_ON = 3
_S_BURST_OFFSET = 4
_S_BURST_LEN = 5
_S_BURST_KW = 6
_S_BURST_PHASE = 7
_S_MINUTE = 8
_S_LEVEL_DRIFT = 9
_S_CLOUD = 10
_S_FRIDGE = 11
_S_ACTIVITY = 12
_S_PEAK_DAY = 13
# (20 and 21 are the weather's, simulators/climate.py.)

#: Day-to-day spread of how busy a customer is, sd of the log of a daily factor.
ACTIVITY_SD_RESIDENTIAL = 0.25
ACTIVITY_SD_BUSINESS = 0.1
#: Heating set-point, deg C: heating runs below it; a home on vacation keeps frost guard.
HEATING_SET_C = 16.0
HEATING_AWAY_C = 10.0


def _bump(h: FloatArray, centre: FloatArray | float, width: float) -> FloatArray:
    """Return a daily Gaussian bump around `centre` hours, wrapping at midnight."""
    d = (h - centre + 12.0) % 24.0 - 12.0
    out: FloatArray = np.exp(-0.5 * (d / width) ** 2)
    return out


def day_kind(pop: Population, t: FloatArray) -> FloatArray:
    """Return the weekday customers keep (Monday = 0): a public holiday is a Sunday (6)."""
    day = np.floor(t / DAY_S)
    # 1970-01-01, epoch day 0, was a Thursday.
    out: FloatArray = np.where(pop.calendar.is_holiday(day), 6.0, (day + 3.0) % 7.0)
    return out


def daily_factor(
    seed: int, stream: int, meter: noise.IntLike, t: FloatArray, sd: FloatArray | float
) -> FloatArray:
    """Return a log-normal factor per meter and day (mean 1, `sd` of its log).

    The day's value takes over from the previous day's between 01:00 and 05:00, so a
    business running at night does not jump at midnight.
    """
    day = np.floor(t / DAY_S).astype(np.int64)
    h = (t - day * DAY_S) / 3600.0
    w = np.clip((h - 1.0) / 4.0, 0.0, 1.0)
    w = w * w * (3.0 - 2.0 * w)
    sd = np.asarray(sd, dtype=np.float64)
    today = np.exp(sd * noise.normal(seed, stream, meter, day) - 0.5 * sd * sd)
    before = np.exp(sd * noise.normal(seed, stream, meter, day - 1) - 0.5 * sd * sd)
    out: FloatArray = before + (today - before) * w
    return out


def _peak_jitter(seed: int, meter: noise.IntLike, t: FloatArray, centre_h: float) -> FloatArray:
    """Return how much a daily peak near `centre_h` moves on this day, hours.

    The day is counted from 12 h before the peak, so the change falls where the peak is
    far away and nothing jumps at midnight.
    """
    day = np.floor((t - (centre_h - 12.0) * 3600.0) / DAY_S).astype(np.int64)
    out: FloatArray = np.clip(0.5 * noise.normal(seed, _S_PEAK_DAY, meter, day), -1.5, 1.5)
    return out


def heating_kw(
    pop: Population, t: FloatArray, away: npt.NDArray[np.bool_] | None = None
) -> FloatArray:
    """Return electric heating, kW (T, N): each kelvin below the set-point costs its rate."""
    temp = outdoor_temp_c(pop.seed, t)
    set_c = HEATING_SET_C if away is None else np.where(away, HEATING_AWAY_C, HEATING_SET_C)
    out: FloatArray = pop.heating_kw_per_k * np.clip(set_c - temp, 0.0, None)
    return out


def away_now(pop: Population, t: FloatArray) -> npt.NDArray[np.bool_]:
    """Return which customers are away on vacation at times `t`, (T, N)."""
    with np.errstate(invalid="ignore"):
        out: npt.NDArray[np.bool_] = (t >= pop.away_start) & (t < pop.away_end)
    return out


def _ramp(
    h: FloatArray, on_h: FloatArray | float, off_h: FloatArray | float, ramp_h: float
) -> FloatArray:
    """Return 0..1: 1 between on_h and off_h, with linear ramps of ramp_h at both ends."""
    up = np.clip((h - on_h) / ramp_h + 0.5, 0.0, 1.0)
    down = np.clip((off_h - h) / ramp_h + 0.5, 0.0, 1.0)
    out: FloatArray = np.minimum(up, down)
    return out


def class_load_kw(pop: Population, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return (spread, bursts): load shared over phases, and appliance bursts, kW, (T, N)."""
    seed, idx = pop.seed, np.arange(pop.n)
    h = (t % DAY_S) / 3600.0
    wd = day_kind(pop, t)
    weekend = wd >= 5.0
    size = pop.size_kw
    residential = pop.cls == RESIDENTIAL
    # A household's own rhythm, and how it moves from day to day (up early, a late dinner).
    shift = (noise.uniform(seed, _S_PEAK_SHIFT, idx, 0) - 0.5) * 1.5
    morning = 7.2 + shift + _peak_jitter(seed, idx, t, 7.2)
    evening = 19.3 + shift + _peak_jitter(seed, idx, t, 19.3)
    midday = 13.0 + shift + _peak_jitter(seed, idx, t, 13.0)
    drift = 1.0 + 0.2 * noise.smooth(seed, _S_BASE_DRIFT, idx, t, 4 * 3600.0)
    # How busy the day is (guests, laundry day, an evening out, a slow day at the shop).
    activity = daily_factor(
        seed, _S_ACTIVITY, idx, t,
        np.where(residential, ACTIVITY_SD_RESIDENTIAL, ACTIVITY_SD_BUSINESS),
    )  # fmt: skip
    away = away_now(pop, t)

    # Residential: base, morning and evening peaks (later at weekends), fridge cycling;
    # a home on vacation keeps only its base load (standby) and the fridge.
    late = np.where(weekend, 1.5, 0.0)
    peaks = activity * (
        0.22 * _bump(h, morning + late, 0.8)
        + 0.40 * _bump(h, evening, 1.5)
        + 0.08 * _bump(h, midday, 2.0) * np.where(weekend, 2.0, 1.0)
    )
    res = size * (0.07 * drift + np.where(away, 0.0, peaks))
    fridge = (noise.smooth(seed, _S_FRIDGE, idx, t, 900.0) > 0.0) * 0.08

    # Commercial: opening hours on weekdays, shorter on Saturday, closed on Sunday.
    close = np.where(wd == 5.0, pop.open_h + 5.0, pop.close_h)
    open_now = _ramp(h, pop.open_h, close, 0.5) * (wd != 6.0)
    trade = activity  # a busier or quieter day at the shop or plant
    com = size * (0.10 + (0.55 + 0.1 * drift) * trade * open_now)

    # Industrial: two shifts 06-22 or three shifts round the clock, weekdays; dips at changes.
    two = _ramp(h, 6.0, 22.0, 0.3)
    shift_pattern = np.where(pop.shifts >= 3, 1.0, two)
    weekday_factor = np.where(wd < 5.0, 1.0, np.where(wd == 5.0, 0.4, 0.0))
    change_dip = 1.0 - 0.3 * (_bump(h, 6.0, 0.15) + _bump(h, 14.0, 0.15) + _bump(h, 22.0, 0.15))
    ind = size * (0.12 + 0.65 * shift_pattern * weekday_factor * change_dip * drift * trade)

    spread = np.select(
        [pop.cls == RESIDENTIAL, pop.cls == COMMERCIAL, pop.cls == INDUSTRIAL],
        [res + fridge, com, ind],
    ) + heating_kw(pop, t, away)
    # Appliance bursts (kettle, oven, washing machine, compressors): in 10-minute slots,
    # more likely at the peaks; each lasts 2-8 minutes on one phase.
    slot = np.floor(t / 600.0).astype(np.int64)
    busy = 0.08 + 0.35 * activity * (_bump(h, morning, 1.0) + _bump(h, evening, 1.8))
    busy = np.where(residential, busy * ~away, 0.25 * open_now * (pop.cls == COMMERCIAL))
    on = noise.uniform(seed, _S_BURST_ON, idx, slot) < busy
    offset = noise.uniform(seed, _S_BURST_OFFSET, idx, slot) * 360.0
    length = 120.0 + noise.uniform(seed, _S_BURST_LEN, idx, slot) * 360.0
    into = t - slot * 600.0 - offset
    active = on & (into >= 0.0) & (into < length)
    kw = np.where(pop.cls == RESIDENTIAL, 1.2 + 1.8 * noise.uniform(seed, _S_BURST_KW, idx, slot),
                  size * 0.1)  # fmt: skip
    bursts = np.where(active, kw, 0.0)
    # Minute-to-minute wobble of everything that runs.
    minute = np.floor(t / 60.0).astype(np.int64)
    wobble = 1.0 + 0.03 * noise.normal(seed, _S_MINUTE, idx, minute)
    return spread * wobble, bursts


def burst_phase(pop: Population, t: FloatArray) -> FloatArray:
    """Return the phase slot (0..2) each burst lands on; always 0 for single-phase meters."""
    slot = np.floor(t / 600.0).astype(np.int64)
    u = noise.uniform(pop.seed, _S_BURST_PHASE, np.arange(pop.n), slot)
    out: FloatArray = np.where(pop.three_phase, np.floor(u * 3.0), 0.0)
    return out


def solar_kw(pop: Population, t: FloatArray) -> FloatArray:
    """Return rooftop solar output, kW (T, N): a half sine 06-18 h times passing clouds."""
    h = (t % DAY_S) / 3600.0
    sun = np.clip(np.sin(np.pi * (h - 6.0) / 12.0), 0.0, None)
    cloud = 0.75 + 0.25 * noise.smooth(pop.seed, _S_CLOUD, pop.tx, t, 1200.0)
    out: FloatArray = pop.solar_kwp * 0.8 * sun * cloud
    return out


class LoadModel(Protocol):
    """Where customers' consumption comes from: (spread, bursts) in kW, each (T, N).

    `spread` is shared over a customer's phases by its shares; `bursts` land on one phase
    (see `burst_phase`). `class_load_kw` is the simulator's own; a load model from another
    library can stand in for it (bench/foreign_fleet.py).
    """

    def __call__(self, pop: Population, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Return (spread, bursts), kW, shaped (T, N), for times `t` shaped (T, 1)."""
        ...


def phase_loads_kw(
    pop: Population, t: FloatArray, idle: FloatArray | None, model: LoadModel = class_load_kw
) -> FloatArray:
    """Return the true consumption per element slot, kW, shaped (T, N, 3).

    `idle` (T, N): where finite, the customer is closed (holiday, shutdown) and draws only
    that fraction of its size, with the daily shape gone. `model` gives the consumption.
    """
    spread, bursts = model(pop, t)
    if idle is not None:
        closed = np.isfinite(idle)
        spread = np.where(closed, pop.size_kw * np.nan_to_num(idle), spread)
        bursts = np.where(closed, 0.0, bursts)
    out = spread[:, :, None] * pop.shares[None, :, :]
    phase = burst_phase(pop, t)
    for k in range(3):
        out[:, :, k] += np.where(phase == k, bursts, 0.0)
    loads: FloatArray = out * pop.active[None, :, :]
    return loads
