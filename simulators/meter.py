"""A simulated meter: a three-phase (or single-phase) load model and what its meter reads."""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass, field

import numpy as np

from meterguard.model import Meter

#: Phase angles of the supply voltages, radians (L1 at 0, L2 at -120°, L3 at +120°).
PHASE_ANGLES = (0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0)
DAY_S = 86400.0


@dataclass(slots=True)
class Reversal:
    """A CT connected backwards on one phase from a given simulated time on."""

    phase: int
    since_s: float = 0.0


@dataclass
class SimulatedMeter:
    """One customer: a true load, its supply, and the readings its meter reports."""

    meter: Meter
    seed: int
    base_kw: float = 2.0
    phase_shares: tuple[float, float, float] = (0.34, 0.33, 0.33)
    power_factor: float = 0.95
    cable_ohm: float = 0.05
    reversal: Reversal | None = None
    #: Peak output of rooftop solar behind the meter, kW (legitimate export at midday).
    solar_kw: float = 0.0
    e_imp_kwh: float = 0.0
    e_exp_kwh: float = 0.0
    _last_t: float | None = field(default=None, repr=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._phase_offset = float(self._rng.uniform(0, 2 * math.pi))

    def true_load_kw(self, t: float) -> float:
        """Return the customer's real consumption at simulated time t, kW."""
        daily = 1.0 + 0.4 * math.sin(2 * math.pi * t / DAY_S + self._phase_offset)
        return max(0.05, self.base_kw * daily * float(self._rng.normal(1.0, 0.03)))

    def solar_w(self, t: float) -> float:
        """Return solar output at simulated time t, W: a half sine from 06:00 to 18:00."""
        hour = (t % DAY_S) / 3600.0
        if self.solar_kw <= 0 or not 6.0 <= hour <= 18.0:
            return 0.0
        return self.solar_kw * 1000.0 * math.sin(math.pi * (hour - 6.0) / 12.0)

    def read(self, t: float) -> dict[str, float]:
        """Return what the meter measures at simulated time t, advancing its registers."""
        phases = self.meter.phases
        shares = (1.0,) if phases == 1 else self.phase_shares
        # What flows through the meter: consumption less what the panels supply.
        total_w = self.true_load_kw(t) * 1000.0 - self.solar_w(t)
        pf = self.power_factor
        phi = math.acos(pf)
        out: dict[str, float] = {}
        neutral = 0j
        metered_total = 0.0
        for k in range(phases):
            n = k + 1
            p_true = total_w * shares[k]
            supply_v = self.meter.nominal_v * (1.0 + 0.01 * math.sin(t / 900.0 + k))
            current = abs(p_true) / (supply_v * pf)
            # The service cable drops voltage with the TRUE current, whatever the meter sees.
            volts = supply_v - current * self.cable_ohm + float(self._rng.normal(0, 0.1))
            current = abs(p_true) / (volts * pf)
            p_meter = p_true
            q_meter = p_true * math.tan(phi)
            if self.reversal and self.reversal.phase == n and t >= self.reversal.since_s:
                p_meter, q_meter = -p_meter, -q_meter
            out[f"v{n}"] = volts
            out[f"i{n}"] = current
            out[f"p{n}"] = p_meter
            out[f"q{n}"] = q_meter
            # Export flips the current against the voltage: angle -phi + 180°.
            angle = PHASE_ANGLES[k] - phi + (math.pi if p_true < 0 else 0.0)
            neutral += cmath.rect(current, angle)
            metered_total += p_meter
        out["in"] = abs(neutral) if phases == 3 else out["i1"]
        out["f"] = 50.0 + float(self._rng.normal(0, 0.01))
        if self._last_t is not None and t > self._last_t:
            hours = (t - self._last_t) / 3600.0
            self.e_imp_kwh += max(metered_total, 0.0) / 1000.0 * hours
            self.e_exp_kwh += max(-metered_total, 0.0) / 1000.0 * hours
        self._last_t = t
        out["e_imp"] = self.e_imp_kwh
        out["e_exp"] = self.e_exp_kwh
        return out
