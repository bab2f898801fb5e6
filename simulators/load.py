"""What customers really consume: load shapes per class, appliance bursts, solar output.

All functions take times `t` shaped (T, 1) (epoch seconds, UTC taken as local time) and
return arrays shaped (T, N) or (T, N, 3) in kW; they are pure functions of the seed.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simulators import noise
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


def _bump(h: FloatArray, centre: FloatArray | float, width: float) -> FloatArray:
    """Return a daily Gaussian bump around `centre` hours, wrapping at midnight."""
    d = (h - centre + 12.0) % 24.0 - 12.0
    out: FloatArray = np.exp(-0.5 * (d / width) ** 2)
    return out


def _weekday(t: FloatArray) -> FloatArray:
    """Return the weekday, Monday = 0 (1970-01-01 was a Thursday)."""
    out: FloatArray = (np.floor(t / DAY_S) + 3.0) % 7.0
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
    wd = _weekday(t)
    weekend = wd >= 5.0
    size = pop.size_kw
    shift = (noise.uniform(seed, _S_PEAK_SHIFT, idx, 0) - 0.5) * 1.5
    drift = 1.0 + 0.2 * noise.smooth(seed, _S_BASE_DRIFT, idx, t, 4 * 3600.0)
    # How busy the day is (guests, laundry day, an evening out): drifts over days.
    activity = 1.0 + 0.25 * noise.smooth(seed, _S_ACTIVITY, idx, t, DAY_S)

    # Residential: base, morning and evening peaks (later at weekends), fridge cycling.
    late = np.where(weekend, 1.5, 0.0)
    res = size * (
        0.07 * drift
        + activity
        * (
            0.22 * _bump(h, 7.2 + shift + late, 0.8)
            + 0.40 * _bump(h, 19.3 + shift, 1.5)
            + 0.08 * _bump(h, 13.0 + shift, 2.0) * np.where(weekend, 2.0, 1.0)
        )
    )
    fridge = (noise.smooth(seed, _S_FRIDGE, idx, t, 900.0) > 0.0) * 0.08

    # Commercial: opening hours on weekdays, shorter on Saturday, closed on Sunday.
    close = np.where(wd == 5.0, pop.open_h + 5.0, pop.close_h)
    open_now = _ramp(h, pop.open_h, close, 0.5) * (wd != 6.0)
    trade = 1.0 + 0.2 * (activity - 1.0)  # a busier or quieter day at the shop or plant
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
    )
    # Appliance bursts (kettle, oven, washing machine, compressors): in 10-minute slots,
    # more likely at the peaks; each lasts 2-8 minutes on one phase.
    slot = np.floor(t / 600.0).astype(np.int64)
    busy = 0.08 + 0.35 * activity * (_bump(h, 7.2 + shift, 1.0) + _bump(h, 19.3 + shift, 1.8))
    busy = np.where(pop.cls == RESIDENTIAL, busy, 0.25 * open_now * (pop.cls == COMMERCIAL))
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
