"""Small demo fleets: honest customers, solar exporters and a few reversed CTs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meterguard.model import Meter
from simulators.live import LiveFleet, LiveMeter
from simulators.meter import Reversal, SimulatedMeter
from simulators.physics import FleetModel
from simulators.population import INDUSTRIAL, FleetOptions, build_population
from simulators.scenario import Confounder, Incident, Scenario


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


def live_demo_fleet(
    n_meters: int = 36, seed: int = 7, thieves: int = 3, solar: int = 3
) -> tuple[list[LiveMeter], list[GroundTruth]]:
    """Build the demo fleet on the vectorised physics: feeders, customers, reversed CTs.

    The same story as `demo_fleet` (a few reversed CTs from the start, a few solar
    customers that export legitimately) on transformers with feeder meters; the returned
    meters list the customers first and the feeder meters last.
    """
    if thieves + solar > n_meters:
        raise ValueError("more thieves and solar customers than meters")
    options = FleetOptions(customers=n_meters, seed=seed, solar_share=0.0)
    pop = build_population(options)
    rng = np.random.default_rng([seed, 0xDE30])
    honest = np.flatnonzero(pop.cls != INDUSTRIAL)
    order = [int(i) for i in rng.permutation(honest)]
    incidents = []
    truth = []
    for i in order[:thieves]:
        meter = pop.customers[i]
        phase = int(rng.integers(1, 4)) if meter.phases == 3 else 1
        incidents.append(
            Incident(kind="reversal", start_s=0.0, end_s=math.inf, meter=meter.id, phase=phase)
        )
        truth.append(GroundTruth(meter=meter.id, kind="reversal", phase=phase))
    confounders = [
        Confounder(kind="solar", meters=tuple(pop.customers[i].id for i in order[thieves:][:solar]),
                   magnitude=2.0)
    ]  # fmt: skip
    scenario = Scenario(options=options, incidents=incidents, confounders=confounders)
    fleet = LiveFleet(FleetModel(scenario, population=pop))
    customers = [m for m in fleet.meters if m.meter.role == "customer"]
    feeders = [m for m in fleet.meters if m.meter.role == "feeder"]
    return customers + feeders, truth
