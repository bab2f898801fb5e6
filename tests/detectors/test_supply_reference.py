"""The supply reference: a transformer phase's voltage, a single-phase meter's phase, its cable."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.cable import STEEPENED_LLR, slope
from detectors.cable_evidence import REFERENCED_STEEPENED_LLR, CableEvidence
from detectors.supply_reference import JUDGE_AFTER_H, SupplyReference
from meterguard.model import Meter, MeterRegistry
from tests.conftest import make_batch

HOUR = 3600.0
DAY_S = 86400.0
OHM = 0.05
Row = tuple[float, int, dict[str, float]]
#: Slots: three three-phase customers (the reference), the single-phase meter on phase 2
#: (index 1), and a single-phase meter of a transformer without three-phase customers.
REFS, SINGLE, ALONE = (0, 1, 2), 3, 4


def _registry() -> MeterRegistry:
    meters = [Meter(id=f"R{k}", service="3p4w", nominal_v=230, transformer="T1") for k in REFS]
    meters.append(Meter(id="SINGLE", service="1p2w", nominal_v=230, transformer="T1"))
    meters.append(Meter(id="ALONE", service="1p2w", nominal_v=230, transformer="T2"))
    return MeterRegistry(meters)


def _fleet(
    days: float, step: float = 900.0, share: float = 1.0, tap_from: float = np.inf, seed: int = 5
) -> list[Row]:
    """Readings every `step`: each phase's supply a random walk of about a volt per quarter.

    The single-phase meter on phase 2 switches appliances behind a cable of `OHM`; from
    `tap_from` (seconds) it meters only `share` of its load.
    """
    rng = np.random.default_rng(seed)
    times = np.arange(0.0, days * DAY_S, step)
    walk = rng.normal(0.0, 1.0 * np.sqrt(step / 900.0), (3, times.size))
    supply = 232.0 + np.cumsum(walk, axis=1)
    on = rng.random(times.size) < 0.3
    true_w = 150.0 + np.where(on, rng.uniform(1000.0, 3000.0, times.size), 0.0)
    own = supply[1] - OHM * true_w / 230.0 + rng.normal(0.0, 0.05, times.size)
    metered = np.where(times >= tap_from, share, 1.0) * true_w
    rows: list[Row] = []
    for j, t in enumerate(times.tolist()):
        for slot in REFS:
            # Three-phase customers drop millivolts on their thick cables.
            noise = rng.normal(0.0, 0.02, 3)
            volts = {f"v{k + 1}": float(supply[k, j] + noise[k]) for k in range(3)}
            rows.append((t, slot, {**volts, "p1": 500.0, "p2": 500.0, "p3": 500.0}))
        rows.append((t, SINGLE, {"v1": float(own[j]), "p1": float(metered[j])}))
        rows.append((t, ALONE, {"v1": float(own[j]), "p1": float(metered[j])}))
    return rows


def _feed(reference: SupplyReference, rows: list[Row], per_batch: int) -> list[tuple[float, float]]:
    """Feed the rows in batches; return the referenced (time, volts) of the single meter."""
    out: list[tuple[float, float]] = []
    for start in range(0, len(rows), per_batch):
        batch = make_batch(rows[start : start + per_batch])
        at, volts = reference.referenced(batch)
        out += [(float(batch.ts[r]), float(v)) for r, v in zip(at, volts, strict=True)]
    return out


def test_a_single_phase_meter_s_phase_is_found_on_its_first_day() -> None:
    reference = SupplyReference(_registry())
    rows = _fleet(3.0)
    referenced = _feed(reference, rows, per_batch=500)
    assert reference.phase_of(np.array([SINGLE, ALONE])).tolist() == [1, -1]
    # Judged on a whole hour, from the hours before it, and applied from that hour on.
    begins = min(t for t, _ in referenced)
    assert begins % HOUR == 0
    assert (JUDGE_AFTER_H + 1) * HOUR <= begins < DAY_S
    assert [t for t, _ in referenced] == [t for t, s, _ in rows if s == SINGLE and t >= begins]


def test_the_phase_and_the_referenced_voltage_do_not_depend_on_batching() -> None:
    rows = _fleet(3.0)
    one = _feed(SupplyReference(_registry()), rows, per_batch=len(rows))
    # A batch per instant (five meters' readings), as a replay at the meters' cadence.
    many = _feed(SupplyReference(_registry()), rows, per_batch=5)
    assert len(one) == len(many) > 0
    np.testing.assert_allclose(np.array(many), np.array(one), rtol=1e-12)


def test_meters_polled_a_few_seconds_apart_share_one_instant() -> None:
    rows = _fleet(3.0)
    exact = _feed(SupplyReference(_registry()), rows, per_batch=500)
    # A poll round stamps each meter a little later than the one before.
    polled = [(t + 1.5 * s, s, v) for t, s, v in rows]
    late = _feed(SupplyReference(_registry()), polled, per_batch=500)
    assert [round(t - 1.5 * SINGLE) for t, _ in late] == [round(t) for t, _ in exact]
    np.testing.assert_allclose([v for _, v in late], [v for _, v in exact], atol=1e-9)


def test_the_referenced_voltage_is_the_meter_s_own_cable_drop() -> None:
    reference = SupplyReference(_registry())
    rows = _fleet(3.0)
    referenced = dict(_feed(reference, rows, per_batch=500))
    metered = {t: v["p1"] for t, s, v in rows if s == SINGLE}
    drop = np.array([230.0 - v for v in referenced.values()])
    load_a = np.array([metered[t] / 230.0 for t in referenced])
    # The supply's swings of volts are gone: what is left is the cable's drop and noise.
    fitted = np.polyfit(load_a, drop, 1)
    assert fitted[0] == pytest.approx(OHM, rel=0.05)
    assert np.std(drop - np.polyval(fitted, load_a)) < 0.1


def test_a_meter_following_no_phase_clearly_is_left_without_one() -> None:
    rows = _fleet(3.0)
    rng = np.random.default_rng(9)
    # Its voltage wanders on its own: a meter on another transformer than the registry says.
    own = 232.0 + np.cumsum(rng.normal(0.0, 1.0, len(rows)))
    mixed = [
        (t, s, {**v, "v1": float(own[k])} if s == SINGLE else v) for k, (t, s, v) in enumerate(rows)
    ]
    reference = SupplyReference(_registry())
    assert _feed(reference, mixed, per_batch=500) == []
    assert reference.phase_of(np.array([SINGLE])).tolist() == [-1]


def test_reference_readings_from_clocks_far_off_leave_the_others_alone() -> None:
    rows = _fleet(3.0)
    clean = _feed(SupplyReference(_registry()), rows, per_batch=500)
    # A reference meter also sends each reading stamped 2^42 ms (139 years) later, and
    # 40 years earlier: packed into one integer with its transformer, such times would
    # read as the next transformer's instants, or come before every other.
    later, earlier = 2.0**42 / 1000.0, -40 * 365 * DAY_S
    copies = [(t + shift, s, v) for t, s, v in rows if s == REFS[0] for shift in (later, earlier)]
    reference = SupplyReference(_registry())
    shifted = _feed(reference, sorted(rows + copies, key=lambda row: row[0] % later), 600)
    assert reference.phase_of(np.array([SINGLE, ALONE])).tolist() == [1, -1]
    np.testing.assert_allclose(np.array(shifted), np.array(clean), rtol=1e-12)


def test_a_lost_phase_at_a_reference_meter_is_left_out_of_the_median() -> None:
    rows = _fleet(3.0)
    clean = dict(_feed(SupplyReference(_registry()), rows, per_batch=500))
    # Two of the three reference meters lose phase 2 on the third day: a median of three
    # with two at 0 V would be 0 V; the one left stands for the phase.
    lost = [
        (t, s, {**v, "v2": 0.0}) if s in REFS[:2] and t >= 2 * DAY_S else (t, s, v)
        for t, s, v in rows
    ]
    faulted = dict(_feed(SupplyReference(_registry()), lost, per_batch=500))
    assert faulted.keys() == clean.keys()
    gaps = np.array([faulted[t] - clean[t] for t in clean])
    assert np.abs(gaps).max() < 0.1


def _tapped(days: float, tap_hour: int, learned_from: int, share: float = 0.5) -> CableEvidence:
    """Both readings of the single meter's cable, a share of its load tapped from `tap_hour`.

    The hours from `learned_from` to the tap's are learned as its normal; from the tap the
    meter records `share` of its load.
    """
    evidence = CableEvidence(_registry(), 72)
    rows = _fleet(days, share=share, tap_from=tap_hour * HOUR)
    for start in range(0, len(rows), 500):
        evidence.add(make_batch(rows[start : start + 500]))
    for hour in range(learned_from, tap_hour):
        evidence.learn(np.array([SINGLE]), hour)
    return evidence


def test_at_quarter_hour_readings_the_referenced_cable_tells_a_tap() -> None:
    evidence = _tapped(5.0, tap_hour=96, learned_from=48)
    meters = np.array([SINGLE])
    usual, usual_error = slope(evidence.referenced.learned(meters))
    _, plain_error = slope(evidence.plain.learned(meters))
    # Against the phase the slope is known to a few per cent, five times better than
    # against the previous reading, where the supply's swings between quarters are noise.
    assert usual[0] == pytest.approx(OHM, rel=0.1)
    assert usual_error[0] < 0.05 * OHM
    assert usual_error[0] < 0.2 * plain_error[0]
    first = np.array([97])
    ratio, sure = evidence.steepening(meters, first, 119)
    assert sure[0]
    assert ratio[0] == pytest.approx(2.0, rel=0.15)
    _, plain_sure = evidence.plain.steepening(meters, first, 119)
    assert not plain_sure[0]


def test_the_referenced_cable_tells_a_tap_before_a_whole_day_of_it_is_known() -> None:
    # A tap on the meter's second morning: its phase found in its first hours, less than a
    # day learned against it. Free of the supply's swings, that is enough (the plain slope
    # waits for a whole day).
    evidence = _tapped(2.5, tap_hour=30, learned_from=0)
    assert evidence.referenced.days[SINGLE] == 0
    ratio, sure = evidence.steepening(np.array([SINGLE]), np.array([31]), 59)
    assert sure[0]
    assert ratio[0] == pytest.approx(2.0, rel=0.15)


def test_the_referenced_sum_says_a_tap_within_hours_where_the_plain_threshold_waits() -> None:
    # A third of the load tapped, read every quarter hour: the referenced sum passes its own
    # threshold within 5 hours, hours before it would pass the plain reading's.
    evidence = _tapped(6.0, tap_hour=96, learned_from=48, share=0.7)
    meters = np.array([SINGLE])
    assert evidence.by_reference(meters)[0]
    told, at_plain_threshold = [], []
    for hour in range(96, 120):
        evidence.advance(meters, hour)
        told.append(bool(evidence.steepened(meters)[0]))
        at_plain_threshold.append(bool(evidence.referenced.evidence[SINGLE] >= STEEPENED_LLR))
    assert told.index(True) <= 4
    assert at_plain_threshold.index(True) > told.index(True) + 1


def test_an_honest_meter_s_referenced_sum_stays_below_its_threshold() -> None:
    evidence = _tapped(6.0, tap_hour=10_000, learned_from=48)
    meters = np.array([SINGLE])
    for hour in range(96, 144):
        evidence.advance(meters, hour)
        assert not evidence.steepened(meters)[0]


def test_without_a_referenced_slope_the_plain_sum_keeps_the_plain_threshold() -> None:
    # The meter of a transformer without three-phase customers has no referenced slope:
    # a sum that would tell a tap against the phase does not, read reading to reading.
    evidence = _tapped(3.0, tap_hour=10_000, learned_from=0)
    alone, single = np.array([ALONE]), np.array([SINGLE])
    assert evidence.by_reference(single)[0]
    assert not evidence.by_reference(alone)[0]
    evidence.plain.evidence[ALONE] = REFERENCED_STEEPENED_LLR + 1.0
    evidence.referenced.evidence[SINGLE] = REFERENCED_STEEPENED_LLR + 1.0
    assert not evidence.steepened(alone)[0]
    assert evidence.steepened(single)[0]
    evidence.plain.evidence[ALONE] = STEEPENED_LLR
    assert evidence.steepened(alone)[0]
