"""The demo's history through the detectors: alerts on the story's meters, none elsewhere."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from detectors.engine import Engine, build_detectors
from meterguard.calendar import Calendar
from meterguard.model import AlertEvent
from meterguard.runtime import Runtime
from service.demo import demo_settings
from service.demo_feed import HeadEndFeed
from simulators.showcase import build_showcase

#: A live start at which a plant on the transformer with the meterless tap had a quiet
#: day, which the tap's unexplained energy, already there, once confirmed as a theft.
LIVE = dt.datetime(2026, 12, 7, 17, 40, tzinfo=dt.UTC).timestamp()


def test_the_demo_history_raises_nothing_the_story_did_not_do(tmp_path: Path) -> None:
    show = build_showcase(LIVE, customers=36, seed=7, pace_s=5.0)
    head_end = set(show.head_end)
    polled = [m for m in show.fleet.meters if m.meter.id not in head_end]
    others = [m.meter for m in show.fleet.meters if m.meter.id in head_end]
    settings = demo_settings(polled, [1], tmp_path, 1, others=others)
    runtime = Runtime.open(settings)
    engine = Engine(
        runtime.registry,
        build_detectors(settings.detectors, runtime.registry),
        Calendar(settings.calendar),
    )
    events: list[AlertEvent] = []
    for batch in HeadEndFeed(show, runtime.registry)._history():
        events += engine.process(batch)
    story = {act.meter for act in show.acts}
    raised = {(e.alert.kind, e.alert.meter) for e in events if e.type.value == "open"}
    assert (
        "consumption_drop",
        next(a.meter for a in show.acts if a.kind == "consumption_drop"),
    ) in raised
    # A transformer's check meter may see the energy a tap takes past its customer meter.
    stray = {
        (kind, meter)
        for kind, meter in raised
        if meter not in story and not (kind == "energy_balance" and meter.endswith("-FDR"))
    }
    assert stray == set()
