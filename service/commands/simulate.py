"""`meterguard simulate`: generate a fleet's telemetry and ground truth, or serve it live."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from service.optional import require_simulators

if TYPE_CHECKING:
    from simulators.scenario import Scenario

NAME = "simulate"
HELP = "generate meters.csv, readings.csv and labels.csv (or serve the fleet live)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the simulate options (SimulatorsMissingError without the simulators)."""
    # Some options are the simulators' own: without them there is nothing to declare.
    require_simulators(NAME)
    from simulators.cli import add_world_arguments, step_seconds

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
    cadence = parser.add_mutually_exclusive_group()
    cadence.add_argument(
        "--step",
        dest="step_s",
        type=step_seconds,
        default=None,
        help="time between readings: 60 (seconds), 90s, 1min, 15min, 30min, 1h (default 60)",
    )
    cadence.add_argument(
        "--step-s", dest="step_s", type=float, default=None, help="seconds between readings"
    )
    parser.add_argument(
        "--interval-mean",
        action="store_true",
        default=None,
        help="write each reading as the mean over the step before it (a load-profile "
        "interval) instead of an instantaneous sample",
    )
    parser.add_argument(
        "--clock-skew-s",
        type=float,
        default=None,
        help="meter clocks off by up to this many seconds either way (under half a step)",
    )
    parser.add_argument(
        "--slow-share",
        type=float,
        default=None,
        help="share of customer meters that report only every 15 minutes",
    )
    add_world_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write the files to (required unless --live; with --live: "
        "meters.csv and labels.csv only)",
    )
    live = parser.add_argument_group("live serving")
    live.add_argument("--live", action="store_true", help="serve the fleet live until Ctrl-C")
    live.add_argument("--protocol", choices=["modbus", "mqtt", "dlms"], default="modbus")
    live.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per wall second (e.g. 60)"
    )
    live.add_argument(
        "--start-h",
        type=float,
        default=24.0,
        help="hours into the scenario where live time starts (default 24: incidents ahead)",
    )
    live.add_argument("--host", default="127.0.0.1", help="address to serve on / broker")
    live.add_argument(
        "--port", type=int, default=None, help="first gateway port (5020) or broker port (1883)"
    )
    live.add_argument("--per-gateway", type=int, default=12, help="Modbus units per gateway")
    live.add_argument(
        "--limit", type=int, default=None, help="dlms: serve the first N meters (one port each)"
    )
    live.add_argument("--hdlc", action="store_true", help="dlms: HDLC over TCP, not the wrapper")
    live.add_argument(
        "--config-out",
        type=Path,
        default=None,
        help="modbus: write the [[sources]] that poll the gateways to this TOML file",
    )
    live.add_argument(
        "--format",
        default="meterguard",
        choices=["meterguard", "shelly", "shelly-rpc", "tasmota"],
        help="mqtt payload format",
    )
    live.add_argument(
        "--interval", type=float, default=1.0, help="mqtt: wall seconds between rounds"
    )


def _scenario(args: argparse.Namespace) -> Scenario:
    from simulators.cli import apply_world_arguments

    scenario = _base_scenario(args)
    # Meter clocks and reporting intervals are drawn apart from the rest of the fleet, so
    # changing them keeps the same customers and incidents.
    changes = {
        name: getattr(args, name)
        for name in ("clock_skew_s", "slow_share")
        if getattr(args, name) is not None
    }
    if changes:
        scenario.options = dataclasses.replace(scenario.options, **changes)
    if args.interval_mean:
        scenario.interval_mean = True
    return apply_world_arguments(args, scenario)


def _base_scenario(args: argparse.Namespace) -> Scenario:
    from simulators.scenario import (
        DEFAULT_START,
        ScenarioError,
        load_scenario,
        mix_scenario,
        parse_start,
    )

    for name in ("meters", "days", "step_s"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ScenarioError(f"--{name.replace('_', '-')} must be positive")
    start = None if args.start is None else parse_start(args.start, "--start")
    if args.scenario is not None:
        return load_scenario(
            args.scenario, meters=args.meters, days=args.days, step_s=args.step_s, start_s=start
        )
    return mix_scenario(
        args.mix,
        args.meters if args.meters is not None else 150,
        args.days if args.days is not None else 3.0,
        args.step_s if args.step_s is not None else 60.0,
        start_s=DEFAULT_START if start is None else start,
    )


def run(args: argparse.Namespace) -> int:
    """Generate the run and print a summary, or serve the fleet live."""
    from simulators.output import write_run
    from simulators.scenario import ScenarioError

    scenario = _scenario(args)
    if args.live:
        return _serve(args, scenario)
    if args.out is None:
        raise ScenarioError("--out is required (the folder to write the files to)")
    summary = write_run(scenario, args.out)
    print(
        f"wrote {summary.meters} meters, {summary.readings} readings and "
        f"{summary.incidents} labelled incidents to {args.out} in {summary.seconds:.1f} s"
    )
    return 0


def _serve(args: argparse.Namespace, scenario: Scenario) -> int:
    from meterguard.meters_csv import write_meters_csv
    from simulators.live import LiveFleet
    from simulators.output import write_labels
    from simulators.scenario import HOUR_S, ScenarioError
    from simulators.serve import SimClock, plan_gateways, serve_modbus, serve_mqtt, sources_toml

    if args.speed <= 0:
        raise ScenarioError("--speed must be positive")
    fleet = LiveFleet.from_scenario(scenario)
    if args.out is not None:
        import numpy as np

        args.out.mkdir(parents=True, exist_ok=True)
        write_meters_csv(args.out / "meters.csv", fleet.model.pop.all_meters())
        grid = scenario.start_s + np.arange(0.0, scenario.days * 86400.0, scenario.step_s)
        write_labels(fleet.model, args.out / "labels.csv", grid)
    if args.protocol == "dlms":
        return _serve_dlms(args)
    clock = SimClock(scenario.start_s + args.start_h * HOUR_S, args.speed)
    n = len(fleet.meters)
    if args.protocol == "mqtt":
        port = args.port or 1883
        print(f"publishing {n} meters to {args.host}:{port} ({args.format}), x{args.speed:g}")
        with contextlib.suppress(KeyboardInterrupt):
            serve_mqtt(fleet, clock, host=args.host, port=port, format_=args.format,
                       interval_s=args.interval)  # fmt: skip
        return 0
    plans = plan_gateways(fleet, args.port or 5020, args.per_gateway)
    if args.config_out is not None:
        args.config_out.write_text(sources_toml(plans, args.host, 5.0), encoding="utf-8")

    def ready() -> None:
        print(
            f"serving {n} meters on {len(plans)} Modbus gateways at {args.host}:"
            f"{plans[0].port}-{plans[-1].port}, simulated time x{args.speed:g}",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_modbus(plans, clock, host=args.host, ready=ready))
    return 0


def _serve_dlms(args: argparse.Namespace) -> int:
    """Run the DLMS front-end as a child process (its library's licence keeps it apart)."""
    import subprocess
    import sys

    from simulators.cli import world_argv

    child = [sys.executable, "-m", "simulators.dlms_fleet"]
    child += ["--scenario", str(args.scenario)] if args.scenario else ["--mix", str(args.mix)]
    child += ["--meters", str(args.meters)] if args.meters else []
    child += ["--limit", str(args.limit)] if args.limit else []
    child += ["--hdlc"] if args.hdlc else []
    child += world_argv(args)
    child += ["--port", str(args.port or 4060), "--host", args.host]
    child += ["--speed", f"{args.speed:g}", "--start-h", f"{args.start_h:g}"]
    with subprocess.Popen(child) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait(10)
            return 0
