"""Each detector: a positive case, the confounders it must not fire on (docs/PHYSICS.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.context import BatchContext
from detectors.engine import Engine, build_detectors
from meterguard.model import AlertEventType, Meter, MeterEvent, MeterRegistry
from tests.conftest import make_batch
from tests.detectors.physics import feed, only, opened, reading

MINUTE = 60.0
HOUR = 3600.0


@pytest.fixture
def fleet() -> MeterRegistry:
    return MeterRegistry(
        [
            Meter(id="A", service="3p4w", nominal_v=230, transformer="T1"),
            Meter(id="B", service="3p4w", nominal_v=230, transformer="T1"),
            Meter(id="C", service="1p2w", nominal_v=230, transformer="T1"),
            Meter(id="SUN", service="3p4w", nominal_v=230, transformer="T1", generation=True),
            Meter(id="FDR", service="3p4w", nominal_v=230, transformer="T1", role="feeder"),
            Meter(id="CT", service="3p4w", nominal_v=230, transformer="T2", ct_primary_a=200),
            Meter(id="CT2", service="3p4w", nominal_v=230, transformer="T2", ct_primary_a=200),
            Meter(
                id="SHOP",
                service="3p4w",
                nominal_v=230,
                transformer="T2",
                customer_class="commercial",
            ),
        ]
    )


A, B, C, SUN, FDR, CT, CT2, SHOP = range(8)


# ---------------------------------------------------------------- bypass


def test_bypass_three_phase_neutral_shows_the_unmetered_phase(fleet: MeterRegistry) -> None:
    engine = only(fleet, "bypass", raise_after_s=120)
    honest = [(t, A, reading([9.0, 2.0, 5.0])) for t in np.arange(0, 600, MINUTE)]
    assert feed(engine, honest) == []  # unbalanced but honest: the neutral agrees
    shunted = reading([9.0, 2.0, 5.0], metered=[1.0, 1.0, 0.5])
    events = feed(engine, [(t, A, shunted) for t in np.arange(600, 1200, MINUTE)])
    alert = opened(events)[0].alert
    assert alert.kind == "bypass"
    assert alert.phase == 3
    assert alert.start == 600
    # Half of 5 A at 230 V and PF 0.95 for 120 s until it raised.
    assert alert.estimated_kwh_lost == pytest.approx(2.5 * 230 * 0.95 * 120 / 3.6e6, rel=0.05)


def test_bypass_single_phase_and_no_neutral_measurement(fleet: MeterRegistry) -> None:
    engine = only(fleet, "bypass", raise_after_s=0)
    earth_return = reading([6.0], phases=1)
    earth_return["in"] = 0.4  # load returns through earth: neutral current ~0
    [alert] = [e.alert for e in opened(feed(engine, [(t, C, earth_return) for t in (0.0, 60.0)]))]
    assert (alert.phase, alert.start, alert.raised) == (1, 0.0, 60.0)
    # Without a measured neutral the row cannot be told: nothing fires.
    blind = reading([9.0, 2.0, 0.0], neutral=False)
    assert feed(engine, [(t, B, blind) for t in np.arange(0, 600, MINUTE)]) == []


def test_bypass_leaves_a_reversed_phase_to_the_reversal_detector(fleet: MeterRegistry) -> None:
    engine = only(fleet, "bypass", raise_after_s=0)
    reversed_ct = reading([4.0, 4.0, 4.0], shift_deg=[0.0, 180.0, 0.0])
    assert feed(engine, [(t, A, reversed_ct) for t in np.arange(0, 300, MINUTE)]) == []


# ---------------------------------------------------------------- imbalance


def _warm(
    slot: int, shares: tuple[float, float, float], hours: float, start: float = 0.0
) -> list[tuple[float, int, dict[str, float]]]:
    rows = []
    for t in np.arange(start, start + hours * HOUR, MINUTE):
        load = 10.0 * (1.0 + 0.5 * np.sin(t / 7200.0))
        rows.append((t, slot, reading([load * s for s in shares], neutral=False)))
    return rows


def test_imbalance_fires_on_a_collapsing_phase_after_warm_up(fleet: MeterRegistry) -> None:
    engine = only(fleet, "imbalance")
    shares = (0.5, 0.3, 0.2)
    assert feed(engine, _warm(B, shares, 7.0), per_batch=60) == []
    theft = [
        (t, B, reading([5.0, 3.0, 2.0], metered=[0.5, 1.0, 1.0], neutral=False))
        for t in np.arange(7 * HOUR, 8 * HOUR, MINUTE)
    ]
    alert = opened(feed(engine, theft, per_batch=5))[0].alert
    assert alert.kind == "imbalance"
    assert alert.phase == 1
    assert alert.start == 7 * HOUR
    assert alert.estimated_kwh_lost > 0


def test_imbalance_ignores_lopsided_loads_appliances_and_proportional_falls(
    fleet: MeterRegistry,
) -> None:
    engine = only(fleet, "imbalance")
    # Lopsided from the first day: judged against its own history, so never a theft.
    assert feed(engine, _warm(B, (0.68, 0.25, 0.07), 8.0), per_batch=60) == []
    engine = only(fleet, "imbalance")
    shares = (0.34, 0.33, 0.33)
    assert feed(engine, _warm(B, shares, 7.0), per_batch=60) == []
    kettle = [  # 8 minutes of a 3 kW appliance on phase 2, then a plant halving its load
        (t, B, reading([3.4, 3.3 + 13.0, 3.3], neutral=False))
        for t in np.arange(7 * HOUR, 7 * HOUR + 480, MINUTE)
    ] + [
        (t, B, reading([1.7, 1.65, 1.65], neutral=False))
        for t in np.arange(7 * HOUR + 480, 9 * HOUR, MINUTE)
    ]
    assert feed(engine, kettle, per_batch=5) == []


def test_imbalance_at_15_minutes_a_sampled_burst_does_not_lift_a_small_phase(
    fleet: MeterRegistry,
) -> None:
    # A lopsided shop read every 15 minutes: phase 3 carries 7 % of the current, and now
    # and then two readings catch a 10 A appliance on it. Such samples must not lift
    # phase 3's usual share so far that its next honest reading looks collapsed.
    engine = only(fleet, "imbalance")
    rows = []
    for n, t in enumerate(np.arange(0.0, 3 * 24 * HOUR, 15 * MINUTE)):
        amps = [45.0, 16.5, 4.6]
        if n % 23 in (7, 8):  # two readings in a row, now and then
            amps[2] += 10.0
        rows.append((t, B, reading(amps, neutral=False)))
    assert feed(engine, rows, per_batch=4) == []


# ---------------------------------------------------------------- voltage loss


def _transformer_rows(
    t: float,
    volts: float,
    low: dict[int, list[float]] | None = None,
    a_amps: list[float] | None = None,
) -> list[tuple[float, int, dict[str, float]]]:
    low = low or {}
    rows = [
        (t, A, reading(a_amps or [5.0, 5.0, 5.0], volts=low.get(A, [volts] * 3))),
        (t, B, reading([4.0, 3.0, 5.0], volts=low.get(B, [volts] * 3))),
        (t, C, reading([3.0], volts=low.get(C, [volts]), phases=1)),
    ]
    return rows


def test_voltage_loss_on_one_meter_that_the_neighbours_do_not_share(fleet: MeterRegistry) -> None:
    engine = only(fleet, "voltage_loss", raise_after_s=120)
    rows = []
    for t in np.arange(0, 600, MINUTE):
        rows += _transformer_rows(t, 231.0, {A: [231.0, 231.0, 0.6 * 231.0]})
    alert = opened(feed(engine, rows))[0].alert
    assert (alert.meter, alert.kind, alert.phase) == ("A", "voltage_loss", 3)
    assert alert.estimated_kwh_lost > 0


def test_voltage_loss_under_a_night_s_standby_load(fleet: MeterRegistry) -> None:
    # A link cut at night, when the home draws 0.15 A a phase (35 W): the loss is a theft
    # whatever the load, and current still flows, so the phase is not simply dead.
    engine = only(fleet, "voltage_loss", raise_after_s=120)
    rows = []
    for t in np.arange(0, 600, MINUTE):
        rows += _transformer_rows(t, 231.0, {A: [231.0, 0.6 * 231.0, 231.0]}, [0.15] * 3)
    alert = opened(feed(engine, rows))[0].alert
    assert (alert.meter, alert.kind, alert.phase) == ("A", "voltage_loss", 2)


def test_a_voltage_loss_is_one_alert_while_the_home_s_load_is_off(fleet: MeterRegistry) -> None:
    # The link stays cut while the phase draws 0.06 A for two hours (too little to tell a
    # cut link from a dead phase; a fridge keeps the other phases judged): those hours
    # neither raise nor end the alert, and the load's return does not open a second one.
    engine = only(fleet, "voltage_loss", raise_after_s=120, clear_after_s=300)
    cut = [231.0, 0.6 * 231.0, 231.0]
    rows = []
    for t in np.arange(0, 4 * HOUR, MINUTE):
        load = [0.5, 0.06, 0.5] if HOUR <= t < 3 * HOUR else [2.0] * 3
        rows += _transformer_rows(t, 231.0, {A: cut}, load)
    events = feed(engine, rows)
    assert [(e.alert.meter, e.alert.phase) for e in opened(events)] == [("A", 2)]
    assert not [e for e in events if e.type == AlertEventType.CLEAR]
    # Healthy again, with load on it: the alert ends.
    rows = []
    for t in np.arange(4 * HOUR, 5 * HOUR, MINUTE):
        rows += _transformer_rows(t, 231.0, a_amps=[2.0] * 3)
    cleared = [e.alert.meter for e in feed(engine, rows) if e.type == AlertEventType.CLEAR]
    assert cleared == ["A"]


def _supply_side_rows() -> list[tuple[float, int, dict[str, float]]]:
    sag = [0.7 * 230.0] * 3
    one_phase = [230.0, 230.0, 0.7 * 230.0]
    rows = []
    for t in np.arange(0, 1800, MINUTE):
        # Phase 3 of T1 sags to 70 % at every meter: meter A's own phases 1-2 stay
        # healthy, so only its neighbours tell this from a loss at A.
        rows += _transformer_rows(t, 230.0, {A: one_phase, B: one_phase})
    for t in np.arange(1800, 3600, MINUTE):
        rows += _transformer_rows(t, 0.7 * 230.0, {A: sag, B: sag, C: [0.7 * 230.0]})
    for t in np.arange(3600, 5400, MINUTE):
        # An outage: no voltage; the loads still switched on draw nothing, and a meter
        # reads a little noise on its current inputs.
        rows += [(t, s, reading([0.05] * n, volts=[0.0] * n, phases=n))
                 for s, n in ((A, 3), (B, 3), (C, 1))]  # fmt: skip
    return rows


def test_voltage_loss_ignores_brownouts_and_outages(fleet: MeterRegistry) -> None:
    engine = only(fleet, "voltage_loss", raise_after_s=0)
    assert feed(engine, _supply_side_rows()) == []


def test_without_neighbours_the_one_phase_sag_would_fire(
    fleet: MeterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The neighbour rule is what keeps the shared sag above quiet: without it, meter A's
    # low phase 3 against its own healthy phases looks like a loss at the meter.
    monkeypatch.setattr(
        BatchContext, "neighbour_voltage", lambda self: np.full((3, len(self.batch)), np.nan)
    )
    engine = only(fleet, "voltage_loss", raise_after_s=0)
    raised = {(e.alert.meter, e.alert.phase) for e in opened(feed(engine, _supply_side_rows()))}
    assert ("A", 3) in raised


# ---------------------------------------------------------------- phase shift


def test_phase_shift_of_25_degrees_against_the_phase_history(fleet: MeterRegistry) -> None:
    engine = only(fleet, "phase_shift", raise_after_s=120)
    honest = [(t, A, reading([6.0, 5.0, 4.0], pf=0.97)) for t in np.arange(0, 3 * HOUR, MINUTE)]
    assert feed(engine, honest, per_batch=30) == []
    shifted = reading([6.0, 5.0, 4.0], pf=0.97, shift_deg=[25.0, 0.0, 0.0])
    rows = [(t, A, shifted) for t in np.arange(3 * HOUR, 3 * HOUR + 900, MINUTE)]
    alert = opened(feed(engine, rows))[0].alert
    assert (alert.kind, alert.phase) == ("phase_shift", 1)
    assert alert.evidence["usual_angle_deg"][0] == pytest.approx(14.1, abs=0.5)
    assert alert.summary.startswith("phase 1 power angle off its usual value by up to 2")
    assert "25 deg" in alert.summary


def test_phase_shift_of_a_standby_load_at_15_min_cadence(fleet: MeterRegistry) -> None:
    engine = only(fleet, "phase_shift")
    standby = [0.08, 0.15, 0.2]  # a few tens of watts per phase, at night
    honest = [(t, A, reading(standby, pf=0.92)) for t in np.arange(0, 6 * HOUR, 900.0)]
    assert feed(engine, honest) == []
    shifted = reading(standby, pf=0.92, shift_deg=[25.0, 0.0, 0.0])
    rows = [(t, A, shifted) for t in np.arange(6 * HOUR, 8 * HOUR, 900.0)]
    alert = opened(feed(engine, rows))[0].alert
    assert (alert.phase, alert.start) == (1, 6 * HOUR)


def test_phase_shift_ignores_a_low_power_factor_load_and_solar(fleet: MeterRegistry) -> None:
    engine = only(fleet, "phase_shift", raise_after_s=0)
    motor = [(t, B, reading([8.0, 8.0, 8.0], pf=0.7)) for t in np.arange(0, 4 * HOUR, MINUTE)]
    assert feed(engine, motor, per_batch=30) == []
    solar = [(t, SUN, reading([3.0, 3.0, 3.0], pf=0.2)) for t in np.arange(0, HOUR, MINUTE)]
    assert feed(engine, solar, per_batch=30) == []


# ---------------------------------------------------------------- tamper


def test_tamper_opens_at_the_event_and_clears_after_the_cover_closes(fleet: MeterRegistry) -> None:
    engine = only(fleet, "tamper", clear_after_s=600, event_hold_s=0)
    events = []
    for t in np.arange(0, 3600, MINUTE):
        batch = make_batch([(t, A, reading([5.0, 5.0, 5.0]))])
        if t == 1200:
            batch.events[0] = MeterEvent.COVER_OPEN
        if t == 1800:
            batch.events[0] = MeterEvent.COVER_CLOSED
        events += engine.process(batch)
    types = [(e.type.value, e.alert.start, e.ts) for e in events if e.type.value != "update"]
    # Raised at the next reading under the open cover; closed at 1800: the last reading
    # under an open cover was at 1740, +600 s of quiet.
    assert types == [("open", 1200.0, 1260.0), ("clear", 1200.0, 2340.0)]
    assert events[-1].alert.end == 1740.0  # the last reading under an open cover
    assert events[0].alert.evidence["onset"]["events"] == ["cover_open"]


def test_tamper_ignores_power_events(fleet: MeterRegistry) -> None:
    engine = only(fleet, "tamper")
    batch = make_batch([(0.0, A, reading([1.0, 1.0, 1.0])), (60.0, A, reading([1.0, 1.0, 1.0]))])
    batch.events[0] = MeterEvent.POWER_DOWN
    batch.events[1] = MeterEvent.POWER_UP
    assert engine.process(batch) == []


# ---------------------------------------------------------------- comms loss


def test_comms_loss_when_a_meter_falls_silent_on_a_live_transformer(fleet: MeterRegistry) -> None:
    engine = only(fleet, "comms_loss", silence_s=900)
    rows = []
    for t in np.arange(0, 7200, MINUTE):
        rows.append((t, B, reading([3.0, 3.0, 3.0])))
        rows.append((t, FDR, reading([30.0, 30.0, 30.0], neutral=False)))
        if t < 1800 or t >= 5400:
            rows.append((t, A, reading([3.0, 3.0, 3.0])))
    events = feed(engine, rows, per_batch=15)
    kinds = [(e.type.value, e.alert.meter) for e in events if e.type.value != "update"]
    assert kinds == [("open", "A"), ("clear", "A")]
    alert = events[-1].alert
    assert alert.start == 1800  # the first reading that did not come
    assert 5000 < (alert.end or 0) <= 5400  # silent until the reading at 5400


def test_comms_loss_not_raised_for_a_dead_transformer(fleet: MeterRegistry) -> None:
    engine = only(fleet, "comms_loss", silence_s=900)
    rows = []
    for t in np.arange(0, 1800, MINUTE):
        rows += [(t, s, reading([3.0, 3.0, 3.0])) for s in (A, B, FDR)]
    # T1 goes dark (every meter after a power_down); T2 keeps the data clock running.
    rows += [(t, SHOP, reading([3.0, 3.0, 3.0])) for t in np.arange(1800, 9000, MINUTE)]
    batch_rows = feed(engine, rows[: 3 * 30], per_batch=30)
    last = make_batch([(1800.0, s, {"v1": 0.0, "v2": 0.0, "v3": 0.0}) for s in (A, B, FDR)])
    last.events[:] = MeterEvent.POWER_DOWN
    assert batch_rows + engine.process(last) + feed(engine, rows[3 * 30 :], per_batch=30) == []


# ---------------------------------------------------------------- energy balance


def test_energy_balance_on_the_feeder_beyond_the_loss_allowance(fleet: MeterRegistry) -> None:
    engine = only(fleet, "energy_balance", loss_allowance=0.05, min_excess_w=300)
    rows = []
    for t in np.arange(0, 6 * HOUR, MINUTE):
        customers = [
            (A, reading([5.0, 5.0, 5.0])),
            (B, reading([4.0, 4.0, 4.0])),
            (C, reading([6.0], phases=1)),
            (SUN, reading([2.0, 2.0, 2.0])),
        ]
        metered_w = sum(v[f"p{k}"] for _, v in customers for k in (1, 2, 3) if f"p{k}" in v)
        tap_w = 5000.0 if t >= 3 * HOUR else 0.0  # a load tapped past every meter
        per_phase_a = (metered_w * 1.03 + tap_w) / (3 * 230 * 0.95)
        rows += [(t, s, v) for s, v in customers]
        rows.append((t, FDR, reading([per_phase_a] * 3, neutral=False)))
    events = feed(engine, rows, per_batch=30)
    alerts = opened(events)
    assert [a.alert.meter for a in alerts] == ["FDR"]
    alert = alerts[0].alert
    # Started by the reading that closed the first hour showing it; raised an hour later.
    assert (alert.start, alert.raised) == (4 * HOUR, 5 * HOUR)
    assert alert.evidence["feeder_w"] > alert.evidence["customers_w"]
    assert 4000 < alert.evidence["unexplained_w"] < 6000


# ---------------------------------------------------------------- what a detector can judge


def test_a_detector_the_data_cannot_support_says_so(fleet: MeterRegistry) -> None:
    engine = Engine(fleet, build_detectors({}, fleet))
    assert engine.silent_reasons("A") == {}  # not heard from yet: nothing to say
    no_neutral = reading([4.0, 4.0, 4.0], neutral=False)
    only_volts = {"v1": 230.0}
    feed(engine, [(0.0, A, no_neutral), (0.0, B, reading([4.0, 4.0, 4.0])), (0.0, C, only_volts)])
    assert engine.silent_reasons("A") == {"bypass": "silent: the meter never sent in"}
    assert engine.silent_reasons("B") == {}
    silent = engine.silent_reasons("C")
    assert silent["reversal"] == "silent: the meter never sent p1"
    assert silent["consumption_drop"] == "silent: the meter never sent e_imp or p1"
    assert "tamper" not in silent  # events need no quantity


def test_phase_shift_evidence_is_json_for_phases_never_learned() -> None:
    # A single-phase meter learns phase 1 only; PostgreSQL refuses NaN in a JSON column.
    registry = MeterRegistry([Meter(id="SINGLE", service="1p2w", nominal_v=230)])
    detector = next(d for d in build_detectors({}, registry) if d.name == "phase_shift")
    detector.base_sin[0, 0], detector.base_cos[0, 0] = 0.25, 0.97  # type: ignore[attr-defined]
    evidence = detector.evidence(0)
    json.dumps(evidence, allow_nan=False)
    assert evidence["usual_angle_deg"][0] == pytest.approx(14.5, abs=0.1)
    assert evidence["usual_angle_deg"][1:] == [None, None]
