"""The vectorised fleet, one meter at a time: the interface the protocol front-ends read.

`LiveFleet` computes whole-fleet frames at a simulated time (cached per `resolution_s`, so
the meters of one poll round share one computation); each `LiveMeter` offers what
`SimulatedMeter` offers (`.meter`, `.read(t)`) plus `.events(t)` and `.online(t)`.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from meterguard.model import Meter
from simulators.physics import FleetModel, Frame, MeterKey
from simulators.population import PHASE_ANGLES
from simulators.scenario import Scenario, mix_scenario


class LiveFleet:
    """A fleet model read live: frames at simulated times that only move forward."""

    def __init__(self, model: FleetModel, *, resolution_s: float = 1.0) -> None:
        self.model = model
        self.resolution_s = resolution_s
        self._frame: Frame | None = None
        self._frame_t = -math.inf
        # Front-ends may read from several threads (the DLMS server does): one frame at once.
        self._lock = threading.Lock()
        keys = [MeterKey(True, t) for t in range(model.pop.n_tx)]
        keys += [MeterKey(False, i) for i in range(model.pop.n)]
        by_id = {model.meter_id(k): k for k in keys}
        self.meters = [LiveMeter(self, m, by_id[m.id]) for m in model.pop.all_meters()]
        self._by_id = {m.meter.id: m for m in self.meters}

    @classmethod
    def from_scenario(cls, scenario: Scenario, *, resolution_s: float = 1.0) -> LiveFleet:
        """Build the model of a scenario and serve it live."""
        return cls(FleetModel(scenario), resolution_s=resolution_s)

    @classmethod
    def mix(cls, seed: int, meters: int, *, resolution_s: float = 1.0) -> LiveFleet:
        """Serve the standard suite's fleet and incidents (times from its default start)."""
        return cls.from_scenario(mix_scenario(seed, meters, 3.0), resolution_s=resolution_s)

    def meter(self, meter_id: str) -> LiveMeter:
        """Return one meter by id (KeyError when unknown)."""
        return self._by_id[meter_id]

    def frame_at(self, t: float) -> tuple[Frame, int]:
        """Return the frame covering simulated time t and its row (always 0)."""
        tq = math.floor(t / self.resolution_s) * self.resolution_s
        with self._lock:
            if self._frame is None or tq > self._frame_t:
                self._frame = self.model.compute(np.array([tq]))
                self._frame_t = tq
            return self._frame, 0


class LiveMeter:
    """One meter of a LiveFleet, read like a SimulatedMeter."""

    def __init__(self, fleet: LiveFleet, meter: Meter, key: MeterKey) -> None:
        self.fleet = fleet
        self.meter = meter
        self.key = key
        self._event_cursor: float | None = None
        pop = fleet.model.pop
        #: Whether `in` is a measurement; otherwise a three-phase meter reports the phasor
        #: sum of its own phase currents (what an SDM630 that computes it would show).
        self.measures_neutral = (not key.feeder) and bool(pop.neutral_measured[key.index])
        self._angles = PHASE_ANGLES if key.feeder else PHASE_ANGLES[pop.phase_of[key.index]]

    def online(self, t: float) -> bool:
        """Return whether the meter answers at t (silenced meters and outages do not)."""
        frame, row = self.fleet.frame_at(t)
        present = frame.f_present if self.key.feeder else frame.present
        return bool(present[row, self.key.index])

    def read(self, t: float) -> dict[str, float]:
        """Return what the meter measures at simulated time t (its phases only)."""
        frame, row = self.fleet.frame_at(t)
        k = self.key.index
        if self.key.feeder:
            v, i, p, q = frame.fv[row, k], frame.fi[row, k], frame.fp[row, k], frame.fq[row, k]
            f, e_imp, e_exp = frame.ff[row, k], frame.f_e_imp[row, k], frame.f_e_exp[row, k]
            neutral = math.nan
        else:
            v, i, p, q = frame.v[row, k], frame.i[row, k], frame.p[row, k], frame.q[row, k]
            f, e_imp, e_exp = frame.f[row, k], frame.e_imp[row, k], frame.e_exp[row, k]
            neutral = float(frame.neutral[row, k])
        phases = self.meter.phases
        out: dict[str, float] = {}
        for n in range(phases):
            for name, value in (("v", v[n]), ("i", i[n]), ("p", p[n]), ("q", q[n])):
                # A two-element (3p3w) meter has no second current element.
                if not math.isnan(value):
                    out[f"{name}{n + 1}"] = float(value)
        if math.isnan(neutral) and phases == 3 and self.meter.service != "3p3w":
            phi = np.arctan2(q, p)
            neutral = float(abs((i * np.exp(1j * (self._angles - phi))).sum()))
        if not math.isnan(neutral):
            out["in"] = neutral
        out["e_imp"] = float(e_imp)
        out["e_exp"] = float(e_exp)
        out["f"] = 0.0 if math.isnan(f) else float(f)
        return out

    def events(self, t: float) -> list[str]:
        """Return the meter's events since the previous call (none before the first call)."""
        if self._event_cursor is None:
            self._event_cursor = t
            return []
        start, self._event_cursor = self._event_cursor, max(self._event_cursor, t)
        return [name for _, name in self.event_log(start, t)]

    def event_log(self, t0: float, t1: float) -> list[tuple[float, str]]:
        """Return the meter's events with t0 < time <= t1 as (simulated time, name)."""
        return [(ev.time_s, ev.name) for ev in self.fleet.model.events_between(t0, t1, self.key)]
