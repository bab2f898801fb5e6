"""The alert lifecycle in data time: any batching, any cadence, blips, no 0-s alerts."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from meterguard.model import AlertEvent, Meter, MeterRegistry
from service.replay import replay
from simulators.output import write_run
from simulators.scenario import mix_scenario
from tests.detectors.physics import feed, only, opened, reading

Key = tuple[Any, ...]


def _alerts(folder: Path, span_s: float) -> list[Key]:
    out = io.StringIO()
    replay(folder, out, span_s=span_s)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    return sorted(
        (r["meter"], r["kind"], r["phase"], r["start"], r["raised"], r["end"]) for r in rows
    )


@pytest.fixture(scope="module")
def mixed_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated fleet whose meters report every minute or every 15 min, clocks skewed."""
    # Half a day of 30 customers gives some 25 alerts: enough to compare, quick to replay.
    scenario = mix_scenario(2, 30, 0.5)
    scenario.options = type(scenario.options)(
        customers=30, seed=2, slow_share=0.3, clock_skew_s=20.0
    )
    folder = tmp_path_factory.mktemp("mixed")
    write_run(scenario, folder, show_progress=False)
    return folder


def test_the_same_readings_give_the_same_alerts_whatever_the_batch_span(
    mixed_fleet: Path,
) -> None:
    # 420 s and 137 s cut the engine's 5-minute ticks apart: rows of one tick come in
    # two batches, whose cuts fall elsewhere in the next tick.
    spans = (60.0, 137.0, 300.0, 420.0, 3600.0)
    by_span = {span: _alerts(mixed_fleet, span) for span in spans}
    assert len(by_span[60.0]) >= 10
    for span in spans:
        assert by_span[span] == by_span[300.0], span


def test_no_alert_is_zero_seconds_long_and_none_is_raised_at_its_start(mixed_fleet: Path) -> None:
    alerts = _alerts(mixed_fleet, 300.0)
    for meter, kind, _, start, raised, end in alerts:
        assert raised is not None, (meter, kind)
        assert raised > start, (meter, kind)
        assert end is None or end >= raised, (meter, kind)


# ---------------------------------------------------------------- cadences by hand

REVERSED = reading([4.0, 4.0, 4.0], shift_deg=[0.0, 180.0, 0.0])
HONEST = reading([4.0, 4.0, 4.0])


@pytest.fixture
def cadences() -> MeterRegistry:
    return MeterRegistry(
        [
            Meter(id=f"EVERY-{s}", service="3p4w", nominal_v=230, transformer="T1")
            for s in (1, 60, 900, 1800, 3600)
        ]
    )


def _rows(
    interval: float, slot: int, start: float, end: float, values: dict[str, float]
) -> list[tuple[float, int, dict[str, float]]]:
    return [(float(t), slot, values) for t in np.arange(start, end, interval)]


def test_a_mixed_fleet_raises_each_meter_within_two_of_its_intervals(
    cadences: MeterRegistry,
) -> None:
    intervals = (1.0, 60.0, 900.0, 1800.0, 3600.0)
    # An honest hour, then two reversed: the hourly meter's second reversed reading is
    # its raise. (Feeding one row per batch costs ~0.3 ms a row: keep the 1-s meter short.)
    onset = 3600.0
    rows = []
    for slot, interval in enumerate(intervals):
        rows += _rows(interval, slot, 0.0, onset, HONEST)
        rows += _rows(interval, slot, onset, 3 * 3600.0, REVERSED)
    rows.sort(key=lambda r: r[0])
    results = []
    for per_batch in (1, 50, 5000):
        engine = only(cadences, "reversal")
        results.append(
            {
                e.alert.meter: (e.alert.start, e.alert.raised)
                for e in opened(feed(engine, rows, per_batch))
            }
        )
    assert results[0] == results[1] == results[2]
    for interval, meter in zip(intervals, (m.id for m in cadences), strict=True):
        start, raised = results[0][meter]
        assert start == onset
        assert raised is not None
        # raise_after_s is 120 s: at the meter's own cadence, never more than 2 intervals.
        assert 0 < raised - start <= max(120.0 + interval, interval), meter


def test_voltage_loss_is_raised_on_half_hourly_readings(cadences: MeterRegistry) -> None:
    low = reading([4.0, 4.0, 4.0], volts=[230.0, 120.0, 230.0])
    rows = []
    for t in np.arange(0, 12 * 3600.0, 1800.0):
        rows.append((float(t), 3, low if t >= 6 * 3600 else HONEST))
        rows.append((float(t), 4, HONEST))  # a healthy neighbour on the transformer
    events = opened(feed(only(cadences, "voltage_loss"), rows))
    assert [(e.alert.meter, e.alert.start, e.alert.raised) for e in events] == [
        ("EVERY-1800", 6 * 3600.0, 6 * 3600.0 + 1800.0)
    ]


def test_a_clear_reading_at_a_coarse_cadence_clears_after_its_hysteresis(
    cadences: MeterRegistry,
) -> None:
    rows = _rows(900.0, 2, 0.0, 3 * 3600.0, REVERSED) + _rows(
        900.0, 2, 3 * 3600.0, 4 * 3600.0, HONEST
    )
    events = feed(only(cadences, "reversal"), rows)
    clear = [e for e in events if e.type.value == "clear"]
    assert len(clear) == 1
    assert clear[0].alert.end == 3 * 3600.0 - 900.0  # the last reversed reading
    assert clear[0].ts == 3 * 3600.0  # the first honest one: 900 s > clear_after_s


# ---------------------------------------------------------------- blips


def _bypass_rows(dip_every: int, seconds: float) -> list[tuple[float, int, dict[str, float]]]:
    """80 % of phase 1 bypassed, read every 5 s; every `dip_every`-th reading looks honest."""
    bypassed = reading([10.0, 4.0, 4.0], metered=[0.2, 1.0, 1.0])
    rows = []
    for k, t in enumerate(np.arange(0, seconds, 5.0)):
        dip = dip_every and k % dip_every == dip_every - 1
        rows.append((float(t), 0, HONEST if dip else bypassed))
    return rows


def _opened(events: Sequence[AlertEvent]) -> list[tuple[float, float | None]]:
    return [(e.alert.start, e.alert.raised) for e in opened(events)]


def test_a_blip_does_not_throw_a_pending_incident_away() -> None:
    registry = MeterRegistry([Meter(id="SDM630", service="3p4w", nominal_v=230)])
    # One honest-looking reading every 100 s under a moving load.
    events = feed(only(registry, "bypass"), _bypass_rows(20, 420.0))
    assert _opened(events) == [(0.0, 120.0)]


def test_a_condition_absent_most_of_the_window_is_not_raised() -> None:
    registry = MeterRegistry([Meter(id="SDM630", service="3p4w", nominal_v=230)])
    # Every other reading honest: the condition holds half the time, not most of it.
    assert opened(feed(only(registry, "bypass"), _bypass_rows(2, 1200.0))) == []
