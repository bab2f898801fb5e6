"""The fleet's outdoor temperature: the season, warm spells and cold snaps, the day's swing.

One weather for the whole fleet (its customers live in one town), a pure function of the
seed and the time like every random quantity of the simulator (simulators/noise.py).
"""

from __future__ import annotations

import numpy as np

from simulators import noise
from simulators.noise import FloatArray

DAY_S = 86400.0
YEAR_DAYS = 365.2425

#: Seasonal mean, deg C: coldest around 15 January, warmest six months later (a temperate
#: inland climate: about 0 deg C in January, 19 deg C in July).
SEASON_MEAN_C, SEASON_AMPLITUDE_C, COLDEST_DAY = 9.5, 9.5, 14.0
#: Weather that lasts: a slow drift over several days and a faster one over about a day.
SPELL_C, SPELL_DAYS = 5.0, 4.0
DAY_TO_DAY_C, DAY_TO_DAY_DAYS = 2.0, 1.0
#: Daily swing, deg C either side of the mean: larger in summer; warmest at 15:00.
SWING_WINTER_C, SWING_SUMMER_C, WARMEST_H = 2.5, 5.0, 15.0

# Noise streams of the weather (the load model's range, simulators/load.py).
_S_SPELL = 20
_S_DAY_TO_DAY = 21


def season_c(t: FloatArray) -> FloatArray:
    """Return the seasonal mean temperature at times `t` (epoch s), deg C."""
    phase = 2.0 * np.pi * (np.asarray(t) / DAY_S - COLDEST_DAY) / YEAR_DAYS
    out: FloatArray = SEASON_MEAN_C - SEASON_AMPLITUDE_C * np.cos(phase)
    return out


def outdoor_temp_c(seed: int, t: FloatArray) -> FloatArray:
    """Return the outdoor temperature at times `t` (epoch s, any shape), deg C."""
    t = np.asarray(t, dtype=np.float64)
    mean = season_c(t)
    spells = SPELL_C * noise.smooth(seed, _S_SPELL, 0, t, SPELL_DAYS * DAY_S)
    spells = spells + DAY_TO_DAY_C * noise.smooth(
        seed, _S_DAY_TO_DAY, 0, t, DAY_TO_DAY_DAYS * DAY_S
    )
    summer = (mean - (SEASON_MEAN_C - SEASON_AMPLITUDE_C)) / (2.0 * SEASON_AMPLITUDE_C)
    swing = SWING_WINTER_C + (SWING_SUMMER_C - SWING_WINTER_C) * summer
    h = (t % DAY_S) / 3600.0
    out: FloatArray = mean + spells + swing * np.cos(2.0 * np.pi * (h - WARMEST_H) / 24.0)
    return out
