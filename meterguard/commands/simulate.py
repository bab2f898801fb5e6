"""`meterguard simulate`: generate a fleet's telemetry and ground truth as replayable files."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "simulate"
HELP = "generate meters.csv, readings.csv and labels.csv from a scenario or a seeded mix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the simulate options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--scenario", type=Path, help="scenario file (TOML, see docs/SIMULATORS.md)"
    )
    source.add_argument(
        "--mix", type=int, metavar="SEED", help="the standard suite: a random mix from SEED"
    )
    parser.add_argument(
        "--meters", type=int, default=None, help="customer meters (default 150; feeders added)"
    )
    parser.add_argument("--days", type=float, default=None, help="simulated days (default 3)")
    parser.add_argument(
        "--step-s", type=float, default=None, help="seconds between readings (default 60)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files to")


def run(args: argparse.Namespace) -> int:
    """Generate the run and print a summary."""
    from simulators.output import write_run
    from simulators.scenario import ScenarioError, load_scenario, mix_scenario

    for name in ("meters", "days", "step_s"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ScenarioError(f"--{name.replace('_', '-')} must be positive")
    if args.scenario is not None:
        scenario = load_scenario(
            args.scenario, meters=args.meters, days=args.days, step_s=args.step_s
        )
    else:
        scenario = mix_scenario(
            args.mix,
            args.meters if args.meters is not None else 150,
            args.days if args.days is not None else 3.0,
            args.step_s if args.step_s is not None else 60.0,
        )
    summary = write_run(scenario, args.out)
    print(
        f"wrote {summary.meters} meters, {summary.readings} readings and "
        f"{summary.incidents} labelled incidents to {args.out} in {summary.seconds:.1f} s"
    )
    return 0
