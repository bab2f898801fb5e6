"""bench/robustness.py --taps: taps added on free customers, counted by share and by day."""

from __future__ import annotations

import argparse
import csv
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.robustness import Cell, run_cell, taps_table

# Simulates and replays a small fleet twice over.
pytestmark = pytest.mark.slow

START = "2026-04-27"


def test_taps_go_to_free_customers_across_transformers_and_are_counted(tmp_path: Path) -> None:
    args = argparse.Namespace(days=3.0, meters=50, country="DE", start=START, keep=True, taps=4)
    row = run_cell(Cell("15min", True, 2), args, tmp_path)
    folder = tmp_path / "sim-15min-feeders-seed2"
    with (folder / "labels.csv").open(encoding="utf-8") as f:
        labels = list(csv.DictReader(f))
    with (folder / "meters.csv").open(encoding="utf-8") as f:
        transformer = {m["meter"]: m["transformer"] for m in csv.DictReader(f)}
    added = tomllib.loads((folder / "taps.toml").read_text(encoding="utf-8"))["incident"]
    meters = [tap["meter"] for tap in added]
    assert len(set(meters)) == 4
    # Each on a customer with no other incident, spread over the fleet's transformers, begun
    # from the second day on, taking 30, 50 or 70 %.
    for tap in added:
        [label] = [entry for entry in labels if entry["meter"] == tap["meter"]]
        assert (label["kind"], float(label["magnitude"])) == ("consumption_drop", tap["magnitude"])
        begun = datetime.fromisoformat(label["start"].replace("Z", "+00:00"))
        assert begun >= datetime.fromisoformat(START).replace(tzinfo=UTC) + timedelta(days=1)
        assert tap["magnitude"] in (0.3, 0.5, 0.7)
    used = [transformer[m] for m in meters]
    assert len(set(used)) >= 2
    assert max(used.count(t) for t in used) - min(used.count(t) for t in used) <= 1
    # The scores carry every consumption_drop incident, the added ones among them.
    drops = [label for label in labels if label["kind"] == "consumption_drop"]
    assert len(row["drop_incidents"]) == len(drops) >= 4
    table = taps_table([row], START)
    total = sum(
        int(line.split("|")[2].split(" of ")[1])
        for line in table.splitlines()[2:]
        if "taken" in line
    )
    assert total == len(drops)
