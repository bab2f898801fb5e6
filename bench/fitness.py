"""Metering fitness scored: its scenario and fleets the detectors were not tuned to.

Runs `meterguard simulate`, `replay` and `evaluate` as a user would, on
simulators/scenarios/fitness.toml (incidents and look-alikes of wiring_misfit, overload
and over_demand) and on the standard mix of other seeds (honest meters, CTs and
contracts drawn by the simulator, the suite's thefts, a few fitness incidents), at each
cadence, and prints one line per run: per fitness kind, incidents/detected/diagnosed, its
false alerts (matching no incident) and the median time to raise.

    .venv/bin/python bench/fitness.py                        # 1min and 15min
    .venv/bin/python bench/fitness.py --cadences 1min 15min 30min --seeds 3 4 --days 7
    .venv/bin/python bench/fitness.py --cadences 15min --seeds 5 --foreign
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FITNESS = ("wiring_misfit", "overload", "over_demand")
SCENARIO = ROOT / "simulators" / "scenarios" / "fitness.toml"


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def score(folder: Path, generate: list[str], country: str | None) -> dict[str, Any]:
    """Simulate into folder, replay and evaluate; return the fitness kinds' figures."""
    _run([*generate, "--out", str(folder)])
    alerts = folder / "alerts.jsonl"
    replay = [str(BIN / "meterguard"), "replay", str(folder), "--out", str(alerts), "--quiet"]
    _run(replay + (["--country", country] if country else []))
    result = json.loads(
        _run([str(BIN / "meterguard"), "evaluate", str(folder), str(alerts), "--json"])
    )
    kinds = result["per_kind"]
    empty = {"incidents": 0, "detected": 0, "diagnosed": 0, "false_alarms": 0}
    return {
        "kinds": {k: kinds.get(k, empty) for k in FITNESS},
        "meter_days": result.get("meter_days"),
    }


def _line(figures: dict[str, Any]) -> str:
    """Return one kind's figures: incidents/detected/diagnosed, false alerts, time to raise."""
    raise_s = figures.get("median_time_to_raise_s")
    raised = "-" if raise_s is None else f"{raise_s / 60:.0f} min"
    return (
        f"{figures['incidents']}/{figures['detected']}/{figures['diagnosed']} "
        f"false {figures['false_alarms']} raise {raised}"
    )


def main() -> None:
    """Run the scenario and the held-out mixes at each cadence and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cadences", nargs="+", default=["1min", "15min"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--meters", type=int, default=300)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--country", default="DE")
    parser.add_argument(
        "--foreign",
        action="store_true",
        help="also fleets whose load comes from published load models (bench/foreign_fleet.py)",
    )
    args = parser.parse_args()
    simulate = [str(BIN / "meterguard"), "simulate"]
    with tempfile.TemporaryDirectory(prefix="fitness-bench-") as tmp:
        for cadence in args.cadences:
            runs: list[tuple[str, list[str], str | None]] = [
                ("scenario", [*simulate, "--scenario", str(SCENARIO), "--step", cadence], None)
            ]
            for seed in args.seeds:
                world = ["--mix", str(seed), "--meters", str(args.meters), "--days"]
                world += [str(args.days), "--step", cadence, "--country", args.country]
                runs.append((f"mix seed {seed}", [*simulate, *world], args.country))
                if args.foreign:
                    foreign = [str(BIN / "python"), "bench/foreign_fleet.py", "--seed", str(seed)]
                    world = world[2:]
                    runs.append((f"foreign {seed}", [*foreign, *world], args.country))
            for name, generate, country in runs:
                folder = Path(tmp) / f"{name.replace(' ', '-')}-{cadence}"
                r = score(folder, generate, country)
                kinds = "; ".join(f"{k} {_line(f)}" for k, f in r["kinds"].items())
                days = f"{r['meter_days']:.0f} meter-days"
                print(f"{cadence:>6} {name:<11} {days}: {kinds}", flush=True)


if __name__ == "__main__":
    main()
