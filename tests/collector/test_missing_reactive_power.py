"""Devices that send no signed reactive power: their payloads through the decoders into the
bypass detector, which must neither invent a bypass nor name the wrong phase."""

from __future__ import annotations

import cmath
import json
import math
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.base import batch_from_rows
from collector.mqtt_decoders import ShellyDecoder, decode_tasmota
from detectors.engine import Engine, build_detectors
from meterguard.model import QUANTITY_INDEX, AlertEvent, Meter, MeterRegistry, ReadingBatch
from simulators.mqtt_publisher import shelly_em, tasmota_sensor
from tests.tiers import examples

ANGLES = (0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0)
T0 = 1_767_225_600.0
MINUTE = 60.0
FLEET = MeterRegistry([Meter(id="H1", service="3p4w", nominal_v=230, transformer="T1")])
DETECTORS = (
    "bypass", "comms_loss", "consumption_drop", "ct_ratio", "energy_balance", "imbalance",
    "phase_shift", "reversal", "tamper", "voltage_loss", "wiring_misfit", "overload",
    "over_demand",
)  # fmt: skip


def physics(
    amps: Sequence[float],
    pf: Sequence[float],
    *,
    leading: Sequence[bool] = (False, False, False),
    metered: Sequence[float] = (1.0, 1.0, 1.0),
) -> dict[str, float]:
    """What a three-phase meter reads; the neutral carries the TRUE phasor sum.

    `leading`: a capacitive phase, its current ahead of its voltage; `metered`: the share
    of each phase's current its element sees (a bypass).
    """
    out: dict[str, float] = {"f": 50.0, "e_imp": 100.0, "e_exp": 0.0}
    true_sum = 0j
    for k in range(3):
        phi = math.acos(pf[k]) * (-1.0 if leading[k] else 1.0)
        seen = amps[k] * metered[k]
        out[f"v{k + 1}"] = 230.0
        out[f"i{k + 1}"] = seen
        out[f"p{k + 1}"] = 230.0 * seen * pf[k]
        out[f"q{k + 1}"] = 230.0 * seen * math.sin(phi)
        true_sum += cmath.rect(amps[k], ANGLES[k] - phi)
    out["in"] = abs(true_sum)
    return out


def bypass_engine() -> Engine:
    config: dict[str, dict[str, Any]] = {d: {"enabled": False} for d in DETECTORS}
    config["bypass"] = {"raise_after_s": 120}
    return Engine(FLEET, build_detectors(config, FLEET))


def via_shelly(readings: Sequence[dict[str, float]]) -> list[ReadingBatch]:
    """Publish each reading as a Shelly Pro 3EM em:0 status and decode it, one a minute."""
    decoder = ShellyDecoder()
    batches = []
    for n, values in enumerate(readings):
        payload = json.dumps(shelly_em(values, 3)).encode()
        [(meter, _ts, quantities, mask)] = decoder(payload, "H1", T0 + n * MINUTE)
        # The status carries no time of its own: it is stamped on receipt.
        batches.append(batch_from_rows([(T0 + n * MINUTE, FLEET.slot(meter), quantities, mask)]))
    return batches


def via_tasmota(readings: Sequence[dict[str, float]]) -> list[ReadingBatch]:
    """Publish each reading as a Tasmota SENSOR payload and decode it, one a minute."""
    batches = []
    for n, values in enumerate(readings):
        payload = json.dumps(tasmota_sensor(values, 3, T0 + n * MINUTE)).encode()
        [(meter, ts, quantities, mask)] = decode_tasmota(payload, "H1", 0.0)
        batches.append(batch_from_rows([(ts, FLEET.slot(meter), quantities, mask)]))
    return batches


def run(engine: Engine, batches: Sequence[ReadingBatch]) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for batch in batches:
        events += engine.process(batch)
    return events


def opened(events: Sequence[AlertEvent]) -> list[AlertEvent]:
    return [e for e in events if e.type.value == "open"]


HONEST = [
    # Unbalanced, each phase with its own power factor, one of them capacitive.
    physics([9.0, 2.0, 5.0], [0.95, 0.80, 0.90], leading=(False, True, False)),
    physics([6.0, 6.5, 1.0], [0.85, 0.97, 0.70]),
    physics([3.0, 8.0, 4.0], [0.92, 0.88, 0.96], leading=(True, False, False)),
]


def test_the_payloads_carry_no_reactive_power() -> None:
    [batch] = via_shelly(HONEST[:1])
    [tasmota] = via_tasmota(HONEST[:1])
    for q in ("q1", "q2", "q3"):
        assert math.isnan(batch.col(q)[0])
        assert math.isnan(tasmota.col(q)[0])


def test_an_honest_shelly_three_phase_stream_raises_nothing() -> None:
    stream = [HONEST[n // 20 % 3] for n in range(120)]
    assert run(bypass_engine(), via_shelly(stream)) == []


def test_an_honest_tasmota_three_phase_stream_raises_nothing() -> None:
    stream = [HONEST[n // 20 % 3] for n in range(120)]
    assert run(bypass_engine(), via_tasmota(stream)) == []


def test_missing_q_taken_as_zero_would_have_raised_a_false_bypass() -> None:
    # The failure this guards against: PF 1 assumed on every phase.
    batches = via_shelly([HONEST[0]] * 10)
    for batch in batches:
        batch.values[QUANTITY_INDEX["q1"] : QUANTITY_INDEX["q3"] + 1] = 0.0
    assert [e.alert.kind for e in opened(run(bypass_engine(), batches))] == ["bypass"]


def _bypassed(
    amps: Sequence[float],
    pf: Sequence[float],
    leading: Sequence[bool],
    metered: Sequence[float],
    decode: Any = via_shelly,
) -> list[AlertEvent]:
    """Half an hour honest (each phase's usual current learned), then ten bypassed minutes."""
    engine = bypass_engine()
    warm = [physics(amps, pf, leading=leading) for _ in range(30)]
    assert run(engine, decode(warm)) == []
    batches = decode([physics(amps, pf, leading=leading, metered=metered)] * 10)
    for batch in batches:
        batch.ts[:] = T0 + 30 * MINUTE + (batch.ts - T0)
    return opened(run(engine, batches))


def test_a_bypassed_phase_behind_a_shelly_is_alerted_on_that_phase() -> None:
    # Phase 3's element sees 30 % of its current: the rest passes it by.
    [event] = _bypassed([4.0, 4.0, 9.0], [0.95, 0.93, 0.90], [False] * 3, [1.0, 1.0, 0.3])
    assert event.alert.kind == "bypass"
    assert event.alert.phase == 3
    assert event.alert.start == T0 + 30 * MINUTE
    [event] = _bypassed([10.0, 3.0, 3.0], [0.95, 0.93, 0.90], [False] * 3, [0.3, 1.0, 1.0])
    assert event.alert.phase == 1


def test_a_bypass_the_unknown_signs_can_explain_stays_silent() -> None:
    # With phase 1 capacitive and phase 3 inductive the neutral fits the metered currents
    # within 7 %: without the signs of Q this bypass cannot be told, and is not guessed.
    events = _bypassed([8.0, 4.0, 6.0], [0.95, 0.90, 0.92], [False] * 3, [1.0, 1.0, 0.2])
    assert events == []


phases = st.lists(st.floats(1.0, 12.0), min_size=3, max_size=3)
factors = st.lists(st.floats(0.6, 1.0), min_size=3, max_size=3)
leads = st.lists(st.booleans(), min_size=3, max_size=3)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(amps=phases, pf=factors, leading=leads)
def test_honest_loads_of_any_shape_raise_nothing(
    amps: list[float], pf: list[float], leading: list[bool]
) -> None:
    stream = [physics(amps, pf, leading=leading)] * 40
    assert run(bypass_engine(), via_shelly(stream)) == []


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    amps=phases,
    pf=factors,
    leading=leads,
    shunted=st.integers(0, 2),
    share=st.floats(0.0, 0.7),
)
# A wholly shunted phase shows no current, so no angle: it was once ruled out by the angle
# it was assumed to have, and the bypass put on phase 1.
@example(amps=[1.0, 2.0, 3.0], pf=[0.75, 1.0, 0.75], leading=[False] * 3, shunted=2, share=0.0)
def test_a_bypass_is_never_put_on_a_wrong_phase(
    amps: list[float], pf: list[float], leading: list[bool], shunted: int, share: float
) -> None:
    metered = [1.0, 1.0, 1.0]
    metered[shunted] = share
    for event in _bypassed(amps, pf, leading, metered):
        assert event.alert.phase in (None, 0, shunted + 1)
