"""Metering fitness: wiring_misfit, overload and over_demand, by hand and on a simulated fleet."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.i18n.catalogue import translate
from api.i18n.summaries import render_summary
from detectors.base import IncidentFacts
from detectors.over_demand import OverDemandDetector
from meterguard.model import Meter, MeterRegistry
from service.replay import replay
from simulators.fitness import two_element_readings
from simulators.live import LiveFleet
from simulators.mqtt_publisher import shelly_em
from simulators.output import write_run
from simulators.registers import SDM630, register_image
from simulators.scenario import load_scenario
from tests.detectors.physics import feed, only, opened, reading

FITNESS = {"wiring_misfit", "overload", "over_demand"}
T0 = 1_767_571_200.0

# ---------------------------------------------------------------- a simulated fleet

SCENARIO = """
[fleet]
meters = 40
seed = 5
days = 1
industrial_share = 0.3
solar_share = 0.0

[[incident]]
kind = "wiring_misfit"
pool = "ct"
phase = 1
magnitude = 0.8
start_h = 6
duration_h = 8

[[incident]]
kind = "ct_overload"
pool = "ct"
magnitude = 1.4
start_h = 6
duration_h = 8

[[incident]]
kind = "added_load"
pool = "commercial"
magnitude = 1.3
start_h = 6
duration_h = 8

[[confounder]]
kind = "balanced_3p3w"
pool = "ct"

[[confounder]]
kind = "ct_heavy"
pool = "ct"
magnitude = 1.1
start_h = 6
duration_h = 8

[[confounder]]
kind = "inrush"
pool = "3p"
count = 2
magnitude = 2.5
start_h = 9
duration_h = 0.05
"""


def _labels(folder: Path) -> list[dict[str, str]]:
    with (folder / "labels.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module", params=[60.0, 900.0], ids=["1min", "15min"])
def fleet_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    """A day of 40 customers with one incident and one look-alike of each kind, replayed."""
    folder = tmp_path_factory.mktemp("fitness")
    (folder / "scenario.toml").write_text(SCENARIO, encoding="utf-8")
    scenario = load_scenario(folder / "scenario.toml", step_s=request.param)
    write_run(scenario, folder, show_progress=False)
    out = io.StringIO()
    replay(folder, out)
    return folder, [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_fitness_incident_is_found_by_its_own_kind(
    fleet_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    folder, alerts = fleet_run
    labels = [row for row in _labels(folder) if row["kind"] in FITNESS]
    assert {row["kind"] for row in labels} == FITNESS
    for label in labels:
        found = [a for a in alerts if a["meter"] == label["meter"] and a["kind"] == label["kind"]]
        assert found, label
        start = found[0]["start"]
        assert label["start"] <= start <= label["end"], (label, start)


def test_the_look_alikes_and_honest_meters_raise_no_fitness_alert(
    fleet_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    folder, alerts = fleet_run
    labelled = {row["meter"] for row in _labels(folder)}
    with (folder / "confounders.csv").open(encoding="utf-8") as handle:
        look_alikes = {
            meter
            for row in csv.DictReader(handle)
            if row["kind"] in ("balanced_3p3w", "ct_heavy", "inrush")
            for meter in row["meters"].split(";")
        }
    assert len(look_alikes) == 4
    stray = [a for a in alerts if a["kind"] in FITNESS and a["meter"] not in labelled]
    assert stray == []


# ---------------------------------------------------------------- by hand


def _two_element(amps: list[float], lag_deg: list[float]) -> dict[str, float]:
    """What a 3p3w meter reads for phase currents lagging their phase voltages by lag_deg."""
    v, i, p, q = two_element_readings(
        np.full((1, 1, 3), 230.0),
        np.array(amps, dtype=float).reshape(1, 1, 3),
        np.radians(np.array(lag_deg)).reshape(1, 1, 3),
        np.array([[0.0, -2.0 * math.pi / 3.0, 2.0 * math.pi / 3.0]]),
        np.array([True]),
    )
    out: dict[str, float] = {}
    for k in (0, 2):
        n = k + 1
        out |= {f"v{n}": v[0, 0, k], f"i{n}": i[0, 0, k], f"p{n}": p[0, 0, k], f"q{n}": q[0, 0, k]}
    return out


DELTA = MeterRegistry([Meter(id="DELTA", service="3p3w", nominal_v=230, ct_primary_a=100)])


def test_a_balanced_load_reads_60_degrees_apart_and_a_line_to_line_load_does_not() -> None:
    balanced = _two_element([50.0, 50.0, 50.0], [25.0, 25.0, 25.0])
    gap = math.degrees(
        math.atan2(balanced["q1"], balanced["p1"]) - math.atan2(balanced["q3"], balanced["p3"])
    )
    assert gap == pytest.approx(60.0)
    # A single-phase load between lines 1 and 3: equal currents, the angles are what tell.
    across = _two_element([50.0, 0.0, 50.0], [25.0 + 30.0, 0.0, 25.0 - 30.0])
    assert across["i1"] == pytest.approx(across["i3"])
    for rows, fires in ((balanced, False), (across, True)):
        engine = only(DELTA, "wiring_misfit")
        events = opened(feed(engine, [(T0 + t, 0, rows) for t in np.arange(0, 3600, 60.0)]))
        assert bool(events) is fires


def test_a_3p3w_meter_with_one_loaded_element_is_single_phase_use() -> None:
    engine = only(DELTA, "wiring_misfit")
    rows = _two_element([60.0, 0.0, 0.0], [20.0, 20.0, 20.0])
    [event] = opened(feed(engine, [(T0 + t, 0, rows) for t in np.arange(0, 3600, 60.0)]))
    assert event.ts == T0 + 1800.0
    assert event.alert.evidence["service"] == "3p3w"
    assert event.alert.estimated_kwh_lost > 0


WHOLE = MeterRegistry([Meter(id="WC", service="1p2w", nominal_v=230, rated_a=60)])


@pytest.mark.parametrize(("amps", "fires"), [(80.0, True), (70.0, False)])
def test_a_whole_current_meter_is_judged_against_its_rated_current(
    amps: float, fires: bool
) -> None:
    engine = only(WHOLE, "overload")
    rows = [(T0 + t, 0, reading([amps], phases=1)) for t in np.arange(0, 3600, 60.0)]
    events = opened(feed(engine, rows))
    assert bool(events) is fires
    if fires:
        assert events[0].alert.evidence["rating_of"] == "rated_a"
        assert events[0].alert.summary.startswith("meter current up to 133% of the CT")


SHOP = MeterRegistry([Meter(id="SHOP", service="3p4w", nominal_v=230, contracted_kw=10)])


def _per_phase_kw(kw: float) -> dict[str, float]:
    return reading([kw * 1000.0 / 3 / 230.0 / 0.95] * 3)


@pytest.mark.parametrize("interval", [60.0, 900.0], ids=["1min", "15min"])
def test_a_start_up_peak_is_not_over_demand_and_added_load_is(interval: float) -> None:
    engine = only(SHOP, "over_demand")
    base, peak, added = _per_phase_kw(6.0), _per_phase_kw(25.0), _per_phase_kw(12.0)
    rows = []
    for t in np.arange(0.0, 6 * 3600.0, interval):
        # A 4-minute start at 2.5 times the contract in hour 1; 12 kW from hour 3 on.
        if 3600.0 <= t < 3600.0 + max(240.0, interval):
            rows.append((T0 + t, 0, peak))
        else:
            rows.append((T0 + t, 0, added if t >= 3 * 3600.0 else base))
    [event] = opened(feed(engine, rows))
    # The demand follows a step of load within two demand windows (15 min each).
    assert T0 + 3 * 3600.0 <= event.alert.start <= T0 + 3 * 3600.0 + 1800.0
    assert event.ts - event.alert.start == pytest.approx(7200.0, abs=interval)
    assert event.alert.evidence["contracted_kw"] == 10.0


def test_the_kinds_have_names_in_both_languages() -> None:
    assert "私增容量" in translate("zh-CN", "kind.over_demand")
    assert "三相三线" in translate("zh-CN", "kind.wiring_misfit")
    assert "过载" in translate("zh-CN", "kind.overload")
    assert translate("en", "kind.overload") == "CT or meter overload"


def test_a_live_3p3w_meter_reads_two_elements_and_no_neutral(tmp_path: Path) -> None:
    (tmp_path / "scenario.toml").write_text(SCENARIO, encoding="utf-8")
    scenario = load_scenario(tmp_path / "scenario.toml")
    fleet = LiveFleet.from_scenario(scenario)
    meter = next(m for m in fleet.meters if m.meter.service == "3p3w")
    values = meter.read(scenario.start_s + 3600.0)
    assert {"v1", "v2", "v3", "i1", "i3", "p1", "p3"} <= set(values)
    assert not {"i2", "p2", "q2", "in"} & set(values)
    # Line-to-line voltages.
    assert values["v1"] == pytest.approx(230.0 * math.sqrt(3), rel=0.08)
    # Served over Modbus and MQTT, the absent element reads zero or is left out.
    assert register_image(values, 3)[SDM630["i2"]] == 0.0
    assert "b_current" not in shelly_em(values, 3)


def test_an_i2_a_3p3w_meter_reports_is_no_measurement() -> None:
    # An SDM630 in 3P3W mode served over Modbus shows zero on line 2.
    rows = _two_element([50.0, 50.0, 50.0], [25.0, 25.0, 25.0]) | {"i2": 0.0}
    engine = only(DELTA, "wiring_misfit")
    assert opened(feed(engine, [(T0 + t, 0, rows) for t in np.arange(0, 3600, 60.0)])) == []


def test_a_summary_renders_in_chinese_with_the_practices_terms() -> None:
    facts = IncidentFacts(phase=0, duration_s=3 * 3600.0, peak_magnitude=1.3, kwh_lost=42.0)
    detector = OverDemandDetector(OverDemandDetector.config_model(), SHOP)
    english = detector.summarise(facts)
    chinese = render_summary(detector.summary_message(facts), english, "zh-CN")
    assert "私增容量" in chinese
    assert "130%" in chinese
    assert "42.0" in chinese
    assert render_summary(detector.summary_message(facts), english, "en") == english
