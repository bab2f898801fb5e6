"""Generated files replay through `meterguard replay` and score with `meterguard evaluate`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from meterguard.model import AlertKind
from service.cli import main
from simulators.scenario import METHODS, mix_scenario


def test_standard_mix_has_every_method_at_subtle_magnitudes_too() -> None:
    scenario = mix_scenario(seed=1, meters=150, days=3.0)
    kinds = {inc.kind for inc in scenario.incidents}
    assert kinds == set(METHODS)
    # Every kind a detector raises (a tip is a person's report, no detector's).
    assert {inc.label_kind for inc in scenario.incidents} | {"imbalance"} == {
        k.value for k in AlertKind if k is not AlertKind.TIP
    }
    by_kind: dict[str, set[float]] = {}
    for inc in scenario.incidents:
        by_kind.setdefault(inc.kind, set()).add(inc.magnitude)
    assert {0.6, 0.75} <= by_kind["bypass"]
    assert 25.0 in by_kind["phase_shift"]
    assert 0.6 in by_kind["voltage_loss"]
    customers = [inc.meter for inc in scenario.incidents if inc.meter is not None]
    assert len(customers) == len(set(customers))
    later = [inc for inc in scenario.incidents if inc.kind != "ct_misfit"]
    assert all(inc.start_s >= scenario.start_s + 86400 for inc in later)
    assert {c.kind for c in scenario.confounders} >= {
        "sag", "brownout", "outage", "holiday", "shutdown", "lopsided"
    }  # fmt: skip


def test_generated_run_replays_without_bad_rows_and_scores_every_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "run"
    assert main(["simulate", "--mix", "2", "--meters", "40", "--days", "1.5", "--step-s", "300",
                 "--out", str(data)]) == 0  # fmt: skip
    capsys.readouterr()
    alerts = tmp_path / "alerts.jsonl"
    assert main(["replay", str(data), "--out", str(alerts)]) == 0
    report = capsys.readouterr()
    assert " 0 bad" in report.out + report.err
    assert main(["evaluate", str(data), str(alerts), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    with (data / "labels.csv").open(newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert result["incidents"] == len(labels) > 0
    assert sum(k["incidents"] for k in result["per_kind"].values()) == len(labels)
