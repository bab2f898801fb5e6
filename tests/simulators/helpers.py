"""Small fleets and scenarios for the simulator tests."""

from __future__ import annotations

import numpy as np

from simulators.physics import FleetModel, Frame
from simulators.population import BoolArray, FleetOptions, FloatArray
from simulators.scenario import DEFAULT_START, HOUR_S, Confounder, Incident, Scenario

OPTIONS = FleetOptions(
    customers=40, seed=11, customers_per_transformer=20, solar_share=0.15, industrial_share=0.15
)
#: A weekday afternoon and evening, one reading a minute.
TIMES: FloatArray = DEFAULT_START + 30 * HOUR_S + np.arange(0.0, 4 * HOUR_S, 60.0)
INCIDENT_START = DEFAULT_START + 31 * HOUR_S
INCIDENT_END = DEFAULT_START + 33 * HOUR_S


def scenario(
    incidents: list[Incident] | None = None, confounders: list[Confounder] | None = None
) -> Scenario:
    return Scenario(
        options=OPTIONS,
        days=3.0,
        step_s=60.0,
        incidents=incidents or [],
        confounders=confounders or [],
    )


def run(sc: Scenario, times: FloatArray = TIMES) -> tuple[FleetModel, Frame]:
    model = FleetModel(sc)
    return model, model.compute(times)


def pick(model: FleetModel, *, three: bool, neutral: bool | None = None, ct: bool = False) -> str:
    """Return the id of the first customer with the wanted installation, without solar."""
    pop = model.pop
    for i in range(pop.n):
        if bool(pop.three_phase[i]) != three or pop.solar_kwp[i] > 0:
            continue
        if neutral is not None and bool(pop.neutral_measured[i]) != neutral:
            continue
        if bool(np.isfinite(pop.ct_primary[i])) != ct:
            continue
        return pop.customers[i].id
    raise AssertionError("no such meter in the test fleet")


def incident(kind: str, meter: str | None, **kw: object) -> Incident:
    return Incident(
        kind=kind,
        start_s=INCIDENT_START,
        end_s=INCIDENT_END,
        meter=meter,
        **kw,  # type: ignore[arg-type]
    )


def window(frame: Frame) -> BoolArray:
    """Rows inside the incident window."""
    out: BoolArray = (frame.ts >= INCIDENT_START) & (frame.ts <= INCIDENT_END)
    return out
