"""Small demo fleets: honest customers, solar exporters and a few reversed CTs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meterguard.model import Meter
from simulators.meter import Reversal, SimulatedMeter


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What the simulator did to a meter, for checking what the detectors say."""

    meter: str
    kind: str
    phase: int | None


def demo_fleet(
    n_meters: int = 36, seed: int = 7, thieves: int = 3, solar: int = 3
) -> tuple[list[SimulatedMeter], list[GroundTruth]]:
    """Build a fleet on a few transformers; `thieves` meters run a reversed CT from t=0."""
    if thieves + solar > n_meters:
        raise ValueError("more thieves and solar customers than meters")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_meters)
    thief_idx = set(order[:thieves].tolist())
    solar_idx = set(order[thieves : thieves + solar].tolist())
    fleet: list[SimulatedMeter] = []
    truth: list[GroundTruth] = []
    for i in range(n_meters):
        three_phase = i % 3 != 2
        meter = Meter(
            id=f"M{i + 1:04d}",
            service="3p4w" if three_phase else "1p2w",
            nominal_v=230.0,
            generation=i in solar_idx,
            transformer=f"T{i // 12 + 1:02d}",
            customer_class="commercial" if three_phase and i % 4 == 0 else "residential",
        )
        shares = rng.dirichlet([8.0, 8.0, 8.0])
        sim = SimulatedMeter(
            meter=meter,
            seed=seed * 10_000 + i,
            base_kw=float(rng.uniform(1.5, 6.0) if three_phase else rng.uniform(0.4, 2.0)),
            phase_shares=(float(shares[0]), float(shares[1]), float(shares[2])),
            power_factor=float(rng.uniform(0.88, 0.98)),
        )
        if i in solar_idx:
            # Enough panels to export around noon, and a constant export share at all hours
            # would be wrong: the half-sine follows the sun.
            sim.solar_kw = sim.base_kw * 3.0
        if i in thief_idx:
            phase = 1 if not three_phase else int(rng.integers(1, 4))
            sim.reversal = Reversal(phase=phase, since_s=0.0)
            truth.append(GroundTruth(meter=meter.id, kind="reversal", phase=phase))
        fleet.append(sim)
    return fleet, truth
