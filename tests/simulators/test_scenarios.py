"""Each theft changes what the METER measures as docs/PHYSICS.md says; the true load goes on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.physics import FleetModel, Frame
from simulators.population import PHASE_ANGLES, FloatArray
from simulators.scenario import Confounder, Incident, ScenarioError
from tests.simulators.helpers import (
    INCIDENT_END,
    INCIDENT_START,
    TIMES,
    incident,
    pick,
    run,
    scenario,
    window,
)

BASE_MODEL, BASE = run(scenario())


def _with(inc: Incident) -> tuple[FleetModel, Frame, int]:
    model, frame = run(scenario([inc]))
    assert inc.meter is not None
    return model, frame, model.pop.index(inc.meter)


def _true_load_unchanged(frame: Frame, m: int) -> None:
    np.testing.assert_array_equal(frame.true_p[:, m], BASE.true_p[:, m])
    np.testing.assert_array_equal(frame.true_i[:, m], BASE.true_i[:, m])
    np.testing.assert_array_equal(frame.fp, BASE.fp)


def _outside_unchanged(frame: Frame, m: int) -> None:
    out = ~window(frame)
    np.testing.assert_array_equal(frame.p[out, m], BASE.p[out, m])


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.75])
def test_three_phase_bypass_collapses_one_phase_current_but_not_the_neutral(
    fraction: float,
) -> None:
    meter = pick(BASE_MODEL, three=True, neutral=True)
    model, frame, m = _with(incident("bypass", meter, phase=2, magnitude=fraction))
    w = window(frame)
    np.testing.assert_allclose(frame.i[w, m, 1], fraction * BASE.i[w, m, 1], rtol=1e-12)
    np.testing.assert_allclose(frame.p[w, m, 1], fraction * BASE.p[w, m, 1], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(frame.i[w, m, 0], BASE.i[w, m, 0])
    # The voltage still falls with the true load, and the neutral still carries it.
    np.testing.assert_array_equal(frame.v[:, m], BASE.v[:, m])
    np.testing.assert_array_equal(frame.neutral[:, m], BASE.neutral[:, m])
    angles = PHASE_ANGLES[model.pop.phase_of[m]]
    phi = np.arctan2(frame.q[:, m], frame.p[:, m])
    computed = np.abs((frame.i[:, m] * np.exp(1j * (angles - phi))).sum(axis=1))
    gap = np.abs(frame.neutral[w, m] - computed[w])
    phi0 = np.arctan2(BASE.q[:, m], BASE.p[:, m])
    honest = np.abs((BASE.i[:, m] * np.exp(1j * (angles - phi0))).sum(axis=1))
    honest_gap = np.abs(BASE.neutral[w, m] - honest[w])
    assert gap.mean() > 10 * honest_gap.mean()
    _true_load_unchanged(frame, m)
    _outside_unchanged(frame, m)


def test_single_phase_bypass_makes_phase_and_neutral_current_differ() -> None:
    meter = pick(BASE_MODEL, three=False, neutral=True)
    _, frame, m = _with(incident("bypass", meter, phase=1, magnitude=0.6))
    w = window(frame)
    np.testing.assert_allclose(frame.i[w, m, 0], 0.6 * frame.neutral[w, m], rtol=0.01)
    _, frame, m = _with(incident("bypass", meter, phase=1, magnitude=0.0, element="neutral"))
    # Single wire + earth: the neutral element sees nothing while the phase carries the load.
    assert (frame.neutral[w, m] == 0).all()
    np.testing.assert_array_equal(frame.i[w, m, 0], BASE.i[w, m, 0])
    _true_load_unchanged(frame, m)


def test_ct_short_on_a_ct_connected_meter() -> None:
    meter = pick(BASE_MODEL, three=True, ct=True)
    _, frame, m = _with(incident("ct_short", meter, phase=3, magnitude=0.05))
    w = window(frame)
    np.testing.assert_allclose(frame.i[w, m, 2], 0.05 * BASE.i[w, m, 2], rtol=1e-12)
    assert np.isnan(frame.neutral[:, m]).all()  # CT-connected: no neutral measurement
    _true_load_unchanged(frame, m)


def test_reversed_ct_registers_export_at_a_customer_without_generation() -> None:
    meter = pick(BASE_MODEL, three=True)
    _, frame, m = _with(incident("reversal", meter, phase=1))
    w = window(frame)
    np.testing.assert_allclose(frame.p[w, m, 0], -BASE.p[w, m, 0], rtol=1e-9)
    np.testing.assert_allclose(frame.q[w, m, 0], -BASE.q[w, m, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(frame.i[:, m], BASE.i[:, m])
    assert (frame.p[w, m, 0] < 0).all()
    _true_load_unchanged(frame, m)
    # A whole single-phase meter connected backwards runs its export register.
    single = pick(BASE_MODEL, three=False)
    _, frame, s = _with(incident("reversal", single))
    assert frame.e_exp[-1, s] > frame.e_exp[0, s] + 0.1
    assert frame.e_exp[0, s] == BASE.e_exp[0, s]


def test_voltage_loss_takes_the_phase_voltage_and_its_power_but_not_its_current() -> None:
    meter = pick(BASE_MODEL, three=True)
    _, frame, m = _with(incident("voltage_loss", meter, phase=3, magnitude=0.6))
    w = window(frame)
    np.testing.assert_allclose(frame.v[w, m, 2], 0.6 * BASE.v[w, m, 2], rtol=1e-12)
    np.testing.assert_allclose(frame.p[w, m, 2], 0.6 * BASE.p[w, m, 2], rtol=1e-9)
    np.testing.assert_array_equal(frame.i[:, m], BASE.i[:, m])
    np.testing.assert_array_equal(frame.v[w, m, :2], BASE.v[w, m, :2])
    _true_load_unchanged(frame, m)


@pytest.mark.parametrize("degrees", [25.0, 120.0])
def test_phase_shift_turns_the_metered_angle(degrees: float) -> None:
    meter = pick(BASE_MODEL, three=True)
    _, frame, m = _with(incident("phase_shift", meter, phase=2, magnitude=degrees))
    w = window(frame)
    before = np.arctan2(BASE.q[w, m, 1], BASE.p[w, m, 1])
    after = np.arctan2(frame.q[w, m, 1], frame.p[w, m, 1])
    turned = np.angle(np.exp(1j * (after - before)))
    np.testing.assert_allclose(turned, math.radians(degrees), atol=1e-9)
    # |S| stays V·I, so P falls far below V·I (PF implausible).
    np.testing.assert_allclose(np.hypot(frame.p[w, m, 1], frame.q[w, m, 1]),
                               frame.v[w, m, 1] * frame.i[w, m, 1], rtol=1e-9)  # fmt: skip
    assert (frame.p[w, m, 1] < BASE.p[w, m, 1]).all()
    _true_load_unchanged(frame, m)


def test_meterless_tap_is_a_proportional_fall_the_feeder_does_not_share() -> None:
    meter = pick(BASE_MODEL, three=False)
    model, frame, m = _with(incident("meterless_tap", meter, magnitude=0.7))
    w = window(frame)
    np.testing.assert_allclose(frame.p[w, m, 0], 0.7 * BASE.p[w, m, 0], rtol=1e-9)
    # The load shape is kept: the metered series is the honest one scaled.
    assert np.corrcoef(frame.p[w, m, 0], BASE.p[w, m, 0])[0, 1] > 0.999
    # The check meter still sees the whole load: feeder minus customers grows by the tap.
    t, k = int(model.pop.tx[m]), int(model.pop.phase_of[m, 0])
    members = (model.pop.tx == t)[:, None] & model.pop.active & (model.pop.phase_of == k)

    def gap(f: Frame) -> FloatArray:
        out: FloatArray = f.fp[:, t, k] - np.where(members, f.p, 0.0).sum(axis=(1, 2))
        return out

    np.testing.assert_allclose(gap(frame)[w] - gap(BASE)[w], 0.3 * BASE.p[w, m, 0], rtol=1e-6)
    _true_load_unchanged(frame, m)


def test_magnet_logs_events_and_under_registers() -> None:
    meter = pick(BASE_MODEL, three=True)
    _, frame, m = _with(incident("magnet", meter, magnitude=0.5))
    w = window(frame)
    np.testing.assert_allclose(frame.i[w, m], 0.5 * BASE.i[w, m], rtol=1e-12)
    events = [(frame.ts[r], e) for r, key, e in frame.events if key.index == m]
    assert events[0] == (INCIDENT_START, "magnetic_field")
    assert {e for _, e in events} == {"magnetic_field"}
    assert len(events) == 3  # at the start and every hour of a two-hour incident
    assert not BASE.events


def test_cover_open_logs_open_and_close_and_the_readings_change_then() -> None:
    meter = pick(BASE_MODEL, three=True)
    _, frame, m = _with(incident("cover_open", meter, phase=1, magnitude=0.3, terminal=True))
    events = [(frame.ts[r], e) for r, key, e in frame.events if key.index == m]
    assert events == [
        (INCIDENT_START, "terminal_cover_open"),
        (INCIDENT_START + 600.0, "terminal_cover_closed"),
    ]
    w = window(frame)
    np.testing.assert_allclose(frame.i[w, m, 0], 0.3 * BASE.i[w, m, 0], rtol=1e-12)


def test_silenced_meter_sends_nothing_while_its_transformer_carries_the_load() -> None:
    meter = pick(BASE_MODEL, three=False)
    _, frame, m = _with(incident("silenced", meter))
    w = window(frame)
    assert not frame.present[w, m].any()
    assert frame.present[~w, m].all()
    assert frame.f_present.all()
    _true_load_unchanged(frame, m)


def test_misfit_ct_under_registers_a_small_load() -> None:
    meter = pick(BASE_MODEL, three=True, ct=True)
    model, frame, m = _with(incident("ct_misfit", meter, magnitude=0.1))
    rating = model.pop.customers[m].ct_primary_a
    before = BASE_MODEL.pop.customers[m].ct_primary_a
    assert rating is not None
    assert before is not None
    assert rating > before
    load = np.percentile(frame.true_i[:, m], 95) / rating
    assert load < 0.2
    # Below 20 % of rating the CT's negative error exceeds its class.
    assert (frame.i[:, m] < 0.99 * frame.true_i[:, m]).all()


def test_unmetered_tap_shows_only_at_the_feeder() -> None:
    tx = BASE_MODEL.pop.feeders[1].transformer
    inc = Incident(kind="unmetered_tap", start_s=INCIDENT_START, end_s=INCIDENT_END,
                   transformer=tx, magnitude=5.0)  # fmt: skip
    _, frame = run(scenario([inc]))
    w = window(frame)
    extra = frame.fp[:, 1].sum(axis=1) - BASE.fp[:, 1].sum(axis=1)
    assert (extra[w] > 0.6 * 5000).all()
    assert (extra[w] < 1.2 * 5000).all()
    np.testing.assert_allclose(extra[~w], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.nan_to_num(frame.p), np.nan_to_num(BASE.p), rtol=1e-9)


def test_outage_zeroes_the_transformer_then_silences_it_with_power_events() -> None:
    pop = BASE_MODEL.pop
    c = Confounder(kind="outage", start_s=INCIDENT_START, end_s=INCIDENT_END, transformer="T002")
    _, frame = run(scenario(confounders=[c]))
    on = pop.tx == 1
    first = int(np.searchsorted(frame.ts, INCIDENT_START))
    w = window(frame)
    assert (frame.v[first, on, 0] == 0).all()
    assert frame.present[first, on].all()
    assert not frame.present[first + 1 : first + int(w.sum()), :][:, on].any()
    assert frame.present[:, ~on].all()
    names = {(frame.ts[r], k.feeder, e) for r, k, e in frame.events}
    assert (INCIDENT_START, True, "power_down") in names
    assert any(e == "power_up" and ts > INCIDENT_END for ts, _, e in names)
    downs = [k for r, k, e in frame.events if e == "power_down" and not k.feeder]
    assert sorted(k.index for k in downs) == list(np.flatnonzero(on))


def test_sag_lowers_every_meter_on_the_transformer_together() -> None:
    pop = BASE_MODEL.pop
    c = Confounder(kind="brownout", start_s=INCIDENT_START, end_s=INCIDENT_END,
                   transformer="T001", magnitude=0.8)  # fmt: skip
    _, frame = run(scenario(confounders=[c]))
    w = window(frame)
    on = pop.tx == 0
    ratio = frame.v[w][:, on, 0] / BASE.v[w][:, on, 0]
    # Constant-power loads draw more current at lower voltage: a little below 0.8.
    assert (ratio < 0.8).all()
    assert (ratio > 0.75).all()
    np.testing.assert_array_equal(frame.v[:, ~on], BASE.v[:, ~on])


def test_holiday_drops_a_shop_to_idle_with_its_shape_gone() -> None:
    pop = BASE_MODEL.pop
    shop = pop.customers[int(np.flatnonzero(pop.cls == 1)[0])].id
    c = Confounder(kind="holiday", start_s=INCIDENT_START, end_s=INCIDENT_END, meters=(shop,),
                   magnitude=0.06)  # fmt: skip
    model, frame = run(scenario(confounders=[c]))
    m = model.pop.index(shop)
    w = window(frame)
    load = np.nansum(frame.true_p[w, m], axis=1)
    assert load.mean() < 0.3 * np.nansum(BASE.true_p[w, m], axis=1).mean()
    assert load.std() < 0.1 * load.mean() + 1.0


def test_lopsided_and_solar_are_installation_facts() -> None:
    single = pick(BASE_MODEL, three=False)
    three = pick(BASE_MODEL, three=True)
    confs = [
        Confounder(kind="solar", meters=(single,), magnitude=2.0),
        Confounder(kind="lopsided", meters=(three,), shares=(0.1, 0.2, 0.7)),
    ]
    model, frame = run(scenario(confounders=confs))
    assert model.pop.customers[model.pop.index(single)].generation
    s, t = model.pop.index(single), model.pop.index(three)
    noon = (frame.ts % 86400 > 11 * 3600) & (frame.ts % 86400 < 13 * 3600)
    if noon.any():
        assert (frame.p[noon, s, 0] < 0).any()
    share = np.nanmean(frame.p[:, t], axis=0) / np.nanmean(frame.p[:, t]).sum() / 3
    assert share[2] > share[0]


def test_scenario_mistakes_name_the_entry() -> None:
    with pytest.raises(ScenarioError, match="no customer meter 'NOPE'"):
        FleetModel(scenario([incident("bypass", "NOPE", phase=1)]))
    single = pick(BASE_MODEL, three=False)
    with pytest.raises(ScenarioError, match="single-phase"):
        FleetModel(scenario([incident("bypass", single, phase=2)]))
    assert TIMES[0] < INCIDENT_START
