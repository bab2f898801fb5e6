"""Readings built from the physics of a service, for detector tests written by hand."""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from typing import Any

from detectors.engine import Engine, build_detectors
from meterguard.model import AlertEvent, MeterRegistry
from tests.conftest import make_batch

ANGLES = (0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0)
ALL_DETECTORS = (
    "bypass", "comms_loss", "consumption_drop", "ct_ratio", "energy_balance", "imbalance",
    "phase_shift", "reversal", "tamper", "voltage_loss", "wiring_misfit", "overload",
    "over_demand",
)  # fmt: skip


def reading(
    amps: Sequence[float],
    *,
    volts: Sequence[float] | None = None,
    pf: float = 0.95,
    metered: Sequence[float] | None = None,
    shift_deg: Sequence[float] | None = None,
    neutral: bool = True,
    phases: int = 3,
) -> dict[str, float]:
    """What a meter reads for true phase currents `amps`.

    `metered`: share of each phase's current its element sees (a bypass); `shift_deg`:
    angle added to the metered current (phase shifting). The neutral, when measured,
    carries the TRUE phasor sum.
    """
    volts = volts or [230.0] * phases
    metered = metered or [1.0] * phases
    shift = shift_deg or [0.0] * phases
    phi = math.acos(pf)
    out: dict[str, float] = {}
    true_sum = 0j
    for k in range(phases):
        n = k + 1
        seen = amps[k] * metered[k]
        angle = phi + math.radians(shift[k])
        out[f"v{n}"] = volts[k]
        out[f"i{n}"] = seen
        out[f"p{n}"] = volts[k] * seen * math.cos(angle)
        out[f"q{n}"] = volts[k] * seen * math.sin(angle)
        true_sum += cmath.rect(amps[k], ANGLES[k] - phi)
    if neutral:
        out["in"] = abs(true_sum) if phases == 3 else amps[0]
    return out


def only(registry: MeterRegistry, name: str, **options: Any) -> Engine:
    """Return an engine running one detector (the others disabled)."""
    config: dict[str, dict[str, Any]] = {d: {"enabled": False} for d in ALL_DETECTORS}
    config[name] = dict(options)
    return Engine(registry, build_detectors(config, registry))


def feed(
    engine: Engine, rows: Sequence[tuple[float, int, dict[str, float]]], per_batch: int = 0
) -> list[AlertEvent]:
    """Feed rows (in time order) as batches of `per_batch` rows (0: one per timestamp)."""
    events: list[AlertEvent] = []
    if per_batch:
        for start in range(0, len(rows), per_batch):
            events += engine.process(make_batch(rows[start : start + per_batch]))
        return events
    group: list[tuple[float, int, dict[str, float]]] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            events += engine.process(make_batch(group))
            group = []
        group.append(row)
    if group:
        events += engine.process(make_batch(group))
    return events


def opened(events: Sequence[AlertEvent]) -> list[AlertEvent]:
    """Return the open events."""
    return [e for e in events if e.type.value == "open"]
