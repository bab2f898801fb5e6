"""The reversal detector and the alert lifecycle it runs under."""

from collections.abc import Sequence

import numpy as np
import pytest

from detectors.engine import Engine, build_detectors
from meterguard.model import AlertEvent, AlertEventType, MeterRegistry
from tests.conftest import make_batch

HONEST, SOLAR, SINGLE, FEEDER = 0, 1, 2, 3
NORMAL = {"p1": 800.0, "p2": 600.0, "p3": 700.0}
REVERSED = {"p1": 800.0, "p2": -600.0, "p3": 700.0}


def _engine(registry: MeterRegistry, **options: float) -> Engine:
    opts = {"raise_after_s": 120.0, "clear_after_s": 300.0, "update_every_s": 60.0}
    opts.update(options)
    return Engine(registry, build_detectors({"reversal": opts}, registry))


def _feed(
    engine: Engine, slot: int, readings: Sequence[tuple[float, dict[str, float]]]
) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for ts, values in readings:
        events += engine.process(make_batch([(ts, slot, values)]))
    return events


def _types(events: Sequence[AlertEvent]) -> list[str]:
    return [e.type.value for e in events]


def test_raises_after_persistence_with_start_at_onset(registry: MeterRegistry) -> None:
    engine = _engine(registry)
    readings = [(t, NORMAL) for t in (0, 60)] + [(t, REVERSED) for t in range(120, 600, 60)]
    events = _feed(engine, HONEST, readings)
    opened = [e for e in events if e.type is AlertEventType.OPEN]
    assert len(opened) == 1
    alert = opened[0].alert
    assert opened[0].ts == 240  # held 120 s from onset at 120
    assert alert.start == 120
    assert alert.meter == "HONEST"
    assert alert.phase == 2
    assert alert.kind == "reversal"
    assert alert.end is None
    assert alert.evidence["onset"]["p2"] == -600.0
    assert "phase 2" in alert.summary
    # 600 W unmetered for 120 s between onset and raise: 0.02 kWh.
    assert alert.estimated_kwh_lost == pytest.approx(0.02, rel=1e-6)
    assert _types(events).count("update") >= 1
    assert events[-1].alert.estimated_kwh_lost == pytest.approx(600 * 420 / 3.6e6, rel=1e-6)


def test_short_blip_raises_nothing(registry: MeterRegistry) -> None:
    engine = _engine(registry)
    readings = [(0, REVERSED), (60, REVERSED), (90, NORMAL), (150, REVERSED), (200, NORMAL)]
    assert _feed(engine, HONEST, readings) == []
    assert engine.active_count() == 0


def test_flicker_keeps_one_alert_and_clears_with_hysteresis(registry: MeterRegistry) -> None:
    engine = _engine(registry)
    readings = [(t, REVERSED) for t in range(0, 300, 60)]
    # Flickers shorter than clear_after_s do not clear or re-open.
    readings += [(300, NORMAL), (360, REVERSED), (420, NORMAL), (480, NORMAL), (540, REVERSED)]
    readings += [(t, NORMAL) for t in range(600, 1200, 60)]
    events = _feed(engine, HONEST, readings)
    types = _types(events)
    assert types.count("open") == 1
    assert types.count("clear") == 1
    assert types.index("clear") == len(types) - 1
    cleared = events[-1]
    assert cleared.ts == 840  # first normal reading 300 s after the last reversed one
    assert cleared.alert.end == 540
    assert cleared.alert.start == 0
    assert len({e.alert.id for e in events}) == 1
    # A new reversal later is a new incident with a new alert.
    later = _feed(engine, HONEST, [(t, REVERSED) for t in range(2000, 2200, 60)])
    assert _types(later) == ["open", "update"]
    assert later[0].alert.id != events[0].alert.id
    assert later[0].alert.start == 2000


def test_solar_customers_and_feeder_meters_never_raise(registry: MeterRegistry) -> None:
    engine = _engine(registry, raise_after_s=0)
    exporting = {"p1": -2000.0, "p2": -1500.0, "p3": -1800.0}
    assert _feed(engine, SOLAR, [(t, exporting) for t in range(0, 600, 60)]) == []
    assert _feed(engine, FEEDER, [(t, REVERSED) for t in range(0, 600, 60)]) == []


def test_single_phase_meter_and_noise_threshold(registry: MeterRegistry) -> None:
    engine = _engine(registry, raise_after_s=0, min_power_w=30)
    assert _feed(engine, SINGLE, [(0, {"p1": -20.0}), (60, {"p1": -25.0})]) == []
    # Never raised on the reading the incident began with: no alert is 0 s long.
    assert _feed(engine, SINGLE, [(120, {"p1": -400.0})]) == []
    events = _feed(engine, SINGLE, [(180, {"p1": -380.0})])
    assert _types(events) == ["open"]
    assert events[0].alert.phase == 1


def test_unmeasured_power_neither_raises_nor_clears(registry: MeterRegistry) -> None:
    engine = _engine(registry, raise_after_s=60, clear_after_s=60)
    events = _feed(engine, HONEST, [(0, REVERSED), (60, REVERSED)])
    assert _types(events) == ["open"]
    # Readings without power (e.g. a voltage-only poll) say nothing about the reversal.
    assert _feed(engine, HONEST, [(t, {"v1": 230.0}) for t in range(120, 1000, 60)]) == []
    assert engine.active_count() == 1


def test_many_meters_in_one_batch_are_independent(registry: MeterRegistry) -> None:
    engine = _engine(registry, raise_after_s=60)
    rows = []
    for t in range(0, 240, 60):
        rows += [
            (float(t), HONEST, REVERSED),
            (float(t), SINGLE, {"p1": 300.0}),
            (float(t), SOLAR, {"p1": -900.0, "p2": -900.0, "p3": -900.0}),
        ]
    events = engine.process(make_batch(rows))
    assert [(e.type.value, e.alert.meter) for e in events if e.type.value == "open"] == [
        ("open", "HONEST")
    ]
    assert engine.readings_seen == len(rows)


def test_restore_continues_the_same_alert(registry: MeterRegistry) -> None:
    first = _engine(registry, raise_after_s=60)
    opened = _feed(first, HONEST, [(0, REVERSED), (60, REVERSED)])
    second = _engine(registry, raise_after_s=60)
    assert second.restore([opened[0].alert]) == 1
    events = _feed(second, HONEST, [(120, REVERSED), (200, REVERSED)])
    assert "open" not in _types(events)
    cleared = _feed(second, HONEST, [(t, NORMAL) for t in range(300, 900, 60)])
    assert _types(cleared) == ["clear"]
    assert cleared[0].alert.id == opened[0].alert.id
    assert cleared[0].alert.end == 200


def test_gap_credit_is_capped(registry: MeterRegistry) -> None:
    engine = _engine(registry, raise_after_s=0, update_every_s=1)
    # A silent day between reversed readings earns no lost-energy credit.
    events = _feed(engine, HONEST, [(0, REVERSED), (60, REVERSED)])
    before = events[-1].alert.estimated_kwh_lost
    assert before > 0.0
    events = _feed(engine, HONEST, [(86_400, REVERSED)])
    assert events[-1].alert.estimated_kwh_lost == before
    assert np.isfinite(events[-1].alert.confidence)
