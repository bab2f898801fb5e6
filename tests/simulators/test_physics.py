"""Physics invariants of the vectorised fleet, for honest meters."""

from __future__ import annotations

import numpy as np

from simulators.physics import FleetModel
from simulators.population import PHASE_ANGLES
from tests.simulators.helpers import TIMES, run, scenario


def test_apparent_power_equals_volts_times_amps_on_every_phase() -> None:
    _, frame = run(scenario())
    s = np.hypot(frame.p, frame.q)
    vi = frame.v * frame.i
    live = np.isfinite(vi) & (vi > 1.0)
    assert live.sum() > 1000
    np.testing.assert_allclose(s[live], vi[live], rtol=1e-9)
    # Single-phase meters measure one element only: the other phases are "not measured".
    model = FleetModel(scenario())
    single = ~model.pop.three_phase
    assert np.isnan(frame.v[:, single, 1:]).all()
    assert np.isfinite(frame.v[:, single, 0]).all()


def test_measured_neutral_is_the_phasor_sum_of_the_phase_currents_for_honest_meters() -> None:
    model, frame = run(scenario())
    pop = model.pop
    angles = PHASE_ANGLES[pop.phase_of]
    phi = np.arctan2(frame.q, frame.p)
    phasor = np.where(pop.active, frame.i * np.exp(1j * (angles - phi)), 0.0)
    computed = np.abs(np.nansum(phasor, axis=2))
    measured = pop.neutral_measured
    assert measured.any()
    assert (~measured).any()
    np.testing.assert_allclose(
        frame.neutral[:, measured], computed[:, measured], rtol=0.01, atol=0.15
    )
    # Meters without a neutral element report nothing rather than a computed value.
    assert np.isnan(frame.neutral[:, ~measured]).all()
    # A lopsided three-phase load really has a neutral current.
    three = pop.three_phase & measured
    assert (frame.neutral[:, three] > 0.05).mean() > 0.9


def test_energy_registers_rise_with_metered_power_and_never_fall() -> None:
    model = FleetModel(scenario())
    first = model.compute(TIMES[:100])
    second = model.compute(TIMES[100:])
    e_imp = np.concatenate([first.e_imp, second.e_imp])
    e_exp = np.concatenate([first.e_exp, second.e_exp])
    assert (np.diff(e_imp, axis=0) >= 0).all()
    assert (np.diff(e_exp, axis=0) >= 0).all()
    # The import register integrates the metered net power: kWh = mean kW x hours.
    net_kw = np.nansum(np.concatenate([first.p, second.p]), axis=2) / 1000.0
    hours = (TIMES[-1] - TIMES[0]) / 3600.0
    gained = e_imp[-1] - e_imp[0]
    expected = np.clip(net_kw[1:], 0, None).mean(axis=0) * hours
    np.testing.assert_allclose(gained, expected, rtol=1e-6, atol=1e-9)
    # Solar customers export at midday, and their export register shows it.
    solar = model.pop.solar_kwp > 0
    assert solar.any()
    assert (e_exp[-1, solar] > e_exp[0, solar]).any()


def test_feeder_meter_measures_its_customers_plus_technical_losses() -> None:
    model, frame = run(scenario())
    pop = model.pop
    for t in range(pop.n_tx):
        members = pop.tx == t
        for k in range(3):
            on_phase = members[:, None] & pop.active & (pop.phase_of == k)
            customers = np.where(on_phase, frame.true_p, 0.0).sum(axis=(1, 2))
            metered = np.where(on_phase, frame.p, 0.0).sum(axis=(1, 2))
            feeder = frame.fp[:, t, k]
            # What the customers' meters register agrees with their true load within class.
            np.testing.assert_allclose(metered, customers, rtol=0.01)
            losses = feeder - customers
            # Losses are positive and a few per cent of the load, as on a real LV network.
            assert (losses > 0).all()
            share = losses / feeder
            assert 0.001 < share.mean() < 0.08
            np.testing.assert_allclose(losses, frame.losses[:, t, k], rtol=1e-9)


def test_service_voltage_drops_with_the_true_current() -> None:
    model, frame = run(scenario())
    pop = model.pop
    bus = frame.fv[:, pop.tx, :][:, :, :]
    bus_at_meter = np.take_along_axis(bus, np.broadcast_to(pop.phase_of, bus.shape), axis=2)
    drop = bus_at_meter - frame.true_v
    importing = (frame.true_p > 200.0) & pop.active
    assert (drop[importing] > 0).all()
    # The drop is the cable's R·P + X·Q over the voltage: proportional to the load.
    for i in np.flatnonzero(~pop.three_phase & (pop.solar_kwp == 0))[:5]:
        corr = np.corrcoef(drop[:, i, 0], frame.true_i[:, i, 0])[0, 1]
        assert corr > 0.95


def test_same_seed_same_fleet_and_chunking_does_not_matter() -> None:
    _, whole = run(scenario())
    model = FleetModel(scenario())
    parts = [model.compute(TIMES[a : a + 37]) for a in range(0, TIMES.size, 37)]
    for name in ("v", "i", "p", "q", "neutral", "fp", "f"):
        joined = np.concatenate([getattr(p, name) for p in parts])
        np.testing.assert_array_equal(joined, getattr(whole, name), err_msg=name)
    np.testing.assert_allclose(np.concatenate([p.e_imp for p in parts]), whole.e_imp, rtol=1e-12)
    other_options = scenario()
    other_options.options = type(other_options.options)(customers=40, seed=12)
    _, other = run(other_options)
    assert not np.allclose(np.nan_to_num(other.p), np.nan_to_num(whole.p))


def test_classes_have_their_own_daily_shape() -> None:
    model = FleetModel(scenario())
    day = model.scenario.start_s + np.arange(0.0, 86400.0, 900.0)
    frame = model.compute(day)
    hour = (day % 86400) / 3600
    load = np.nansum(frame.true_p, axis=2) + model.pop.solar_kwp * 0  # true consumption
    cls = model.pop.cls
    commercial = load[:, cls == 1].sum(axis=1)
    residential = load[:, (cls == 0) & (model.pop.solar_kwp == 0)].sum(axis=1)
    # Shops draw most while open; homes peak in the evening, not at 04:00.
    assert commercial[(hour > 10) & (hour < 16)].mean() > 2 * commercial[hour < 5].mean()
    assert residential[(hour > 18) & (hour < 21)].mean() > 2 * residential[hour < 5].mean()
