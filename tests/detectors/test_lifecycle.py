"""The alert lifecycle beyond one detector: per-class timing, config errors, restarts."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import numpy as np
import pytest

from detectors.base import DETECTORS, HOLDS, Conditions
from detectors.engine import Engine, Lifecycle, Rows, build_detectors, load_detector_modules
from meterguard.errors import ConfigError
from meterguard.model import AlertEvent, Meter, MeterRegistry
from tests.detectors.physics import feed, only, opened, reading

REVERSED = reading([4.0, 4.0, 4.0], shift_deg=[0.0, 180.0, 0.0])


@pytest.fixture
def classes() -> MeterRegistry:
    return MeterRegistry(
        [
            Meter(id="HOME", service="3p4w", nominal_v=230, customer_class="residential"),
            Meter(id="PLANT", service="3p4w", nominal_v=230, customer_class="industrial"),
        ]
    )


def test_persistence_and_hysteresis_per_customer_class(classes: MeterRegistry) -> None:
    engine = only(
        classes,
        "reversal",
        raise_after_s=120,
        classes={"industrial": {"raise_after_s": 600, "clear_after_s": 60}},
    )
    rows = [(t, s, REVERSED) for t in np.arange(0, 900, 60.0) for s in (0, 1)]
    rows += [(t, s, reading([4.0, 4.0, 4.0])) for t in np.arange(900, 1200, 60.0) for s in (0, 1)]
    events = feed(engine, rows)
    raised = {e.alert.meter: e.ts for e in opened(events)}
    assert raised == {"HOME": 120.0, "PLANT": 600.0}
    cleared = {e.alert.meter: e.ts for e in events if e.type.value == "clear"}
    # Last reversed reading at 840: PLANT clears 60 s later, HOME after its default 300 s.
    assert cleared == {"PLANT": 900.0, "HOME": 1140.0}


def test_unknown_class_option_is_a_config_error(classes: MeterRegistry) -> None:
    with pytest.raises(ConfigError) as caught:
        build_detectors({"reversal": {"classes": {"industrial": {"raise_after": 1}}}}, classes)
    assert "detectors.reversal.classes.industrial.raise_after" in str(caught.value)


def test_a_restart_verdict_closes_the_open_alert_and_opens_a_new_one(
    classes: MeterRegistry,
) -> None:
    engine = Engine(classes, build_detectors({"reversal": {"raise_after_s": 0}}, classes))
    life = next(lf for lf in engine.lifecycles if lf.detector.name == "reversal")
    assert isinstance(life, Lifecycle)
    events: list[AlertEvent] = []

    def verdict(ts: float, restart: bool) -> None:
        cond = Conditions.none(1)
        cond.holds[0] = HOLDS
        step = Conditions(
            cond.holds, cond.phase, cond.loss_w, cond.score, cond.magnitude,
            restart=np.array([restart]),
        )  # fmt: skip
        # Hourly window verdicts: each covers the hour before it.
        window = np.array([3600.0])
        rows = Rows(np.array([ts]), np.array([1], np.int32), step, window, lambda i: {})
        life.advance(rows, events)

    verdict(0.0, False)
    verdict(3600.0, False)
    verdict(7200.0, True)
    verdict(10800.0, False)
    kinds = [(e.type.value, e.alert.start) for e in events if e.type.value != "update"]
    assert kinds == [("open", 0.0), ("clear", 0.0), ("open", 7200.0)]
    clear = next(e for e in events if e.type.value == "clear")
    assert clear.alert.end == 3600.0
    assert len(engine.open_alerts()) == 1


def test_example_config_lists_every_detector_at_its_defaults() -> None:
    example = Path(__file__).parents[2] / "deploy" / "meterguard.example.toml"
    sections = tomllib.loads(example.read_text())["detectors"]
    load_detector_modules()
    assert set(sections) == set(DETECTORS)
    for name, cls in DETECTORS.items():
        assert cls.config_model.model_validate(sections[name]) == cls.config_model(), name


def test_persistence_is_continuous_in_data_time(classes: MeterRegistry) -> None:
    engine = only(classes, "reversal", raise_after_s=120)
    rows = [(0.0, 0, REVERSED)]  # one reversed reading, then a day of silence
    rows += [(86_400.0 + t, 0, REVERSED) for t in (0.0, 60.0, 120.0, 180.0)]
    events = opened(feed(engine, rows))
    assert [(e.ts, e.alert.start) for e in events] == [(86_520.0, 86_400.0)]


def test_a_pending_incident_survives_gaps_up_to_its_limit(classes: MeterRegistry) -> None:
    engine = only(classes, "reversal", raise_after_s=120)
    rows = [(t, 0, REVERSED) for t in (0.0, 300.0)]  # 5-min readings: one incident
    events = opened(feed(engine, rows))
    assert [(e.ts, e.alert.start) for e in events] == [(300.0, 0.0)]


def test_restored_alert_keeps_its_peak(classes: MeterRegistry) -> None:
    first = only(classes, "reversal", raise_after_s=60)
    feed(first, [(t, 0, REVERSED) for t in np.arange(0, 600, 60.0)])
    [alert] = first.open_alerts()
    assert "up to 0.87 kW" in alert.summary
    second = only(classes, "reversal", raise_after_s=60)
    assert second.restore([alert]) == 1
    [again] = second.open_alerts()
    assert again.summary.split(", for")[0] == alert.summary.split(", for")[0]
    assert again.evidence["peak_magnitude"] == alert.evidence["peak_magnitude"]


def test_late_rows_never_move_an_incident_backwards(classes: MeterRegistry) -> None:
    engine = only(classes, "reversal", raise_after_s=60)
    feed(engine, [(t, 0, REVERSED) for t in np.arange(0, 600, 60.0)])
    feed(engine, [(120.0, 0, REVERSED)])  # a late row of the same meter
    assert engine.rows_dropped == 1
    [alert] = engine.open_alerts()
    assert alert.evidence["last_hold_ts"] == 540.0


def test_class_options_match_case_insensitively_and_unknown_ones_are_logged(
    classes: MeterRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="detectors.engine"):
        engine = only(
            classes,
            "reversal",
            raise_after_s=120,
            classes={"Industrial": {"raise_after_s": 600}, "industral": {"raise_after_s": 1}},
        )
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "detectors.reversal.classes.industral"
    ]
    life = next(lf for lf in engine.lifecycles if lf.detector.name == "reversal")
    assert life.raise_after.tolist() == [120.0, 600.0]


def test_a_forgotten_silent_meter_raises_a_new_alert_with_an_id_of_its_own() -> None:
    # HOME falls silent at 0 while PLANT, on the same transformer, keeps reporting:
    # comms_loss raises as soon as the silence is long enough.
    fleet = MeterRegistry(
        [
            Meter(id=name, service="3p4w", nominal_v=230, transformer="T1")
            for name in ("HOME", "PLANT")
        ]
    )
    engine = only(fleet, "comms_loss", silence_s=300)
    home, plant = reading([4.0, 4.0, 4.0]), reading([9.0, 9.0, 9.0])
    events = feed(engine, [(0.0, 0, home)] + [(t, 1, plant) for t in np.arange(60, 1200, 60.0)])
    (first,) = [e.alert for e in opened(events)]
    assert (first.meter, first.kind.value) == ("HOME", "comms_loss")
    # An operator clears it by hand; HOME stays silent, so the engine raises again, later
    # in data time and under a new id (the cleared one must never come back).
    assert engine.forget(first)
    assert not engine.forget(first)  # already forgotten
    later = feed(engine, [(t, 1, plant) for t in np.arange(1200, 1500, 60.0)])
    (second,) = [e.alert for e in opened(later)]
    assert second.id != first.id
    assert second.start >= 1140.0  # not before the data time of the clear
    assert engine.active_count() == 1
