"""Metering that does not fit the load: two-element meters, loads held above a rating.

The incidents `wiring_misfit`, `ct_overload` and `added_load` and the confounders
`balanced_3p3w`, `ct_heavy` and `inrush` (docs/SIMULATORS.md) change the true load or
the metering installation; this module applies them to a FleetModel's arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from simulators.population import Population
from simulators.scenario import Confounder, Incident, Scenario

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Incidents and confounders that hold a meter's true load at a level for a while:
#: kind -> what the level is a share of ("ct": the CT rating's current, "contract": the
#: contracted capacity).
HELD_LOADS = {
    "ct_overload": "ct",
    "ct_heavy": "ct",
    "added_load": "contract",
    "inrush": "contract",
}
#: Kinds that make the meter a three-phase three-wire (two-element) one for the whole run.
TWO_ELEMENT = ("wiring_misfit", "balanced_3p3w")


def _meters(scenario: Scenario) -> Iterable[tuple[str, str]]:
    """Yield (kind, meter id) of every incident and confounder naming a meter."""
    for inc in scenario.incidents:
        if inc.meter is not None:
            yield inc.kind, inc.meter
    for c in scenario.confounders:
        for meter_id in c.meters:
            yield c.kind, meter_id


def install_two_element(pop: Population, scenario: Scenario) -> BoolArray:
    """Make the named meters 3p3w, their load balanced; return which customers they are.

    Their true load is split evenly over the phases (what a 3p3w meter is meant for);
    a `wiring_misfit` incident unbalances it while it lasts.
    """
    two = np.zeros(pop.n, dtype=bool)
    for kind, meter_id in _meters(scenario):
        if kind not in TWO_ELEMENT:
            continue
        i = pop.index(meter_id)
        if not pop.three_phase[i]:
            raise ValueError(f"{kind}: {meter_id} is single-phase")
        two[i] = True
    if two.any():
        pop.shares[two] = 1.0 / 3.0
        pop.neutral_measured[two] = False
        pop.customers = [
            m.model_copy(update={"service": "3p3w"}) if two[i] else m
            for i, m in enumerate(pop.customers)
        ]
    return two


def _held_w(pop: Population, i: int, kind: str, magnitude: float) -> FloatArray:
    """Return the power per element slot, W, at which a held load keeps meter i.

    The customer's own phase shares are kept (a load added across its phases as the rest
    of it is): for a CT level, its heaviest phase carries magnitude x the rating.
    """
    shares = pop.shares[i]
    if HELD_LOADS[kind] == "ct":
        rating = pop.ct_primary[i]
        if math.isnan(rating):
            raise ValueError(f"{kind}: {pop.customers[i].id} has no CT")
        heaviest = magnitude * rating * pop.tx_nominal_v[0] * pop.pf[i]
        out: FloatArray = heaviest * shares / shares.max()
        return out
    contracted = pop.customers[i].contracted_kw or pop.size_kw[i]
    out = magnitude * contracted * 1000.0 * shares
    return out


def shape_loads(
    p_load: FloatArray,
    ts: FloatArray,
    pop: Population,
    incidents: Iterable[Incident],
    confounders: Iterable[Confounder],
) -> None:
    """Apply held loads and unbalanced use to the true load per element slot, in place."""
    entries: list[tuple[str, str, float, float, float, int | None]] = [
        (inc.kind, inc.meter, inc.start_s, inc.end_s, inc.magnitude, inc.phase)
        for inc in incidents
        if inc.meter is not None
    ]
    entries += [
        (c.kind, m, c.start_s, c.end_s, c.magnitude, None) for c in confounders for m in c.meters
    ]
    for kind, meter_id, start, end, magnitude, phase in entries:
        if kind not in HELD_LOADS and kind != "wiring_misfit":
            continue
        rows = np.flatnonzero((ts >= start) & (ts <= end))
        if not rows.size:
            continue
        i = pop.index(meter_id)
        if kind == "wiring_misfit":
            # The load moves onto one phase: `magnitude` of it there, the rest shared.
            heavy = (phase or 1) - 1
            shares = np.full(3, (1.0 - magnitude) / 2.0)
            shares[heavy] = magnitude
            total = p_load[rows, i, :].sum(axis=1)
            p_load[rows, i, :] = total[:, None] * shares[None, :]
            continue
        held = _held_w(pop, i, kind, magnitude) * pop.active[i]
        p_load[rows, i, :] = np.maximum(p_load[rows, i, :], held[None, :])


def two_element_readings(
    v: FloatArray,
    i: FloatArray,
    angle: FloatArray,
    phase_angles: FloatArray,
    two: BoolArray,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Return what meters read (v, i, p, q per slot), two-element meters as such.

    A two-element meter measures the line voltages V1-V2 and V3-V2 and the line currents
    I1 and I3 (the Aron connection): its elements sit in slots 1 and 3, slot 2 is NaN, and
    v2 carries the third line voltage V3-V1. `angle` is each current's lag behind its own
    phase voltage.
    """
    v_ph = v * np.exp(1j * phase_angles[None, :, :])
    i_ph = i * np.exp(1j * (phase_angles[None, :, :] - angle))
    p = v * i * np.cos(angle)
    q = v * i * np.sin(angle)
    if not two.any():
        return v, i, p, q
    v, i = v.copy(), i.copy()
    sel = np.flatnonzero(two)
    v12 = v_ph[:, sel, 0] - v_ph[:, sel, 1]
    v32 = v_ph[:, sel, 2] - v_ph[:, sel, 1]
    s1 = v12 * np.conj(i_ph[:, sel, 0])
    s3 = v32 * np.conj(i_ph[:, sel, 2])
    v[:, sel, 0], v[:, sel, 1], v[:, sel, 2] = (
        np.abs(v12),
        np.abs(v_ph[:, sel, 2] - v_ph[:, sel, 0]),
        np.abs(v32),
    )
    i[:, sel, 1] = np.nan
    p[:, sel, 0], p[:, sel, 1], p[:, sel, 2] = s1.real, np.nan, s3.real
    q[:, sel, 0], q[:, sel, 1], q[:, sel, 2] = s1.imag, np.nan, s3.imag
    return v, i, p, q
