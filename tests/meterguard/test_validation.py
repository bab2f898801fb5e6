"""Physical bounds and clocks: what a reading may say before anything believes it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.engine import Engine, build_detectors
from meterguard.model import QUANTITIES, Meter, MeterRegistry
from meterguard.validation import ReadingValidator, ValidationSettings
from tests.conftest import make_batch
from tests.detectors.physics import feed, reading
from tests.tiers import examples

NOW = 1_780_000_000.0


@pytest.fixture
def fleet() -> MeterRegistry:
    return MeterRegistry(
        [
            Meter(id="HOME", service="1p2w", nominal_v=230, transformer="T1"),
            Meter(id="PLANT", service="3p4w", nominal_v=230, ct_primary_a=200, transformer="T1"),
            Meter(id="SHOP", service="3p4w", nominal_v=230, transformer="T1"),
        ]
    )


def test_absurd_values_become_not_measured_and_are_counted(fleet: MeterRegistry) -> None:
    validator = ReadingValidator(fleet)
    rows = [
        (NOW, 0, {"v1": 1e308, "i1": 5.0, "p1": -1e308, "f": 0.0, "e_imp": -3.0}),
        (NOW, 1, {"v1": 230.0, "i1": 5000.0, "p1": 1000.0, "q1": math.inf}),
        (NOW, 2, {"v1": 231.0, "i1": 4.0, "p1": 880.0, "q1": 120.0, "f": 50.01}),
    ]
    checked = validator.check(make_batch(rows), NOW)
    assert len(checked) == 3
    home, plant, shop = (dict(zip(QUANTITIES, checked.values[:, r], strict=True)) for r in range(3))
    for value in (home["v1"], home["p1"], home["f"], home["e_imp"], plant["i1"], plant["q1"]):
        assert math.isnan(value)
    assert home["i1"] == 5.0
    # 1 kW at 230 V and an unbelievable current: bounded by the CT's limit, so kept.
    assert plant["p1"] == 1000.0
    assert shop == {**shop, "v1": 231.0, "i1": 4.0, "p1": 880.0, "q1": 120.0, "f": 50.01}
    counts = validator.report.values_out_of_range
    assert counts == {"v1": 1, "p1": 1, "f": 1, "e_imp": 1, "i1": 1, "q1": 1}


def test_readings_from_wrong_clocks_are_refused_and_counted_per_meter(fleet: MeterRegistry) -> None:
    validator = ReadingValidator(fleet, ValidationSettings(max_clock_skew_s=300))
    rows = [
        (NOW, 0, reading([3.0], phases=1)),
        (NOW + 5.5 * 3600, 1, reading([3.0, 3.0, 3.0])),  # local time sent as UTC
        (253_402_300_800.0, 2, reading([3.0, 3.0, 3.0])),  # past the year 9999
        (86_400.0, 0, reading([3.0], phases=1)),  # back from a power cut in 1970
        (NOW + 200, 2, reading([3.0, 3.0, 3.0])),  # within the skew: kept
    ]
    checked = validator.check(make_batch(rows), NOW)
    assert checked.ts.tolist() == [NOW, NOW + 200]
    report = validator.report
    assert report.readings_refused == {"clock_ahead": 2, "clock_reset": 1}
    assert report.clock_off == {"PLANT": 1, "SHOP": 1, "HOME": 1}


def test_absurd_values_raise_no_alert(fleet: MeterRegistry) -> None:
    engine = Engine(fleet, build_detectors({}, fleet))
    validator = ReadingValidator(fleet)
    events = []
    for k in range(30):
        t = NOW + 60.0 * k
        honest = reading([3.0], phases=1)
        poison = {**honest, "p1": -1e308, "v1": 1e308} if k % 3 == 0 else honest
        events += engine.process(validator.check(make_batch([(t, 0, poison)]), t))
    assert events == []
    assert validator.report.values_out_of_range["p1"] == 10


def test_one_future_reading_never_moves_the_fleets_data_time(fleet: MeterRegistry) -> None:
    engine = Engine(fleet, build_detectors({}, fleet))
    rows = []
    for k in range(60):
        t = NOW + 60.0 * k
        rows += [(t, s, reading([3.0, 3.0, 3.0])) for s in (1, 2)]
        rows.append((t, 0, reading([3.0], phases=1)))
        if k == 10:
            rows.append((t + 10 * 365 * 86_400.0, 2, reading([3.0, 3.0, 3.0])))
    events = feed(engine, rows, per_batch=50)
    # Without the guard, data time would jump ten years and every meter fall silent.
    assert [e for e in events if e.alert.kind == "comms_loss"] == []
    assert engine.clock_report.clock_off == {"SHOP": 1}
    assert engine.now == NOW + 59 * 60.0


@settings(max_examples=examples(200), deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.just(1e308),
            st.just(-1e308),
        ),
        min_size=len(QUANTITIES),
        max_size=len(QUANTITIES),
    ),
    slot=st.integers(min_value=0, max_value=2),
    ts=st.floats(min_value=-1e12, max_value=1e12),
)
def test_whatever_a_device_sends_comes_out_believable(
    values: list[float], slot: int, ts: float
) -> None:
    registry = MeterRegistry(
        [
            Meter(id="HOME", service="1p2w", nominal_v=230),
            Meter(id="PLANT", service="3p4w", nominal_v=230, ct_primary_a=200),
            Meter(id="DELTA", service="3p3w", nominal_v=230),
        ]
    )
    validator = ReadingValidator(registry)
    checked = validator.check(
        make_batch([(ts, slot, dict(zip(QUANTITIES, values, strict=True)))]), NOW
    )
    assert len(checked) in (0, 1)
    if len(checked):
        assert np.isfinite(checked.ts).all()
        kept = checked.values[~np.isnan(checked.values)]
        assert np.isfinite(kept).all()
        assert (np.abs(kept) < 1e13).all()
