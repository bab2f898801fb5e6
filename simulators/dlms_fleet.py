"""Serve a scenario's fleet over DLMS/COSEM: its own process, one TCP port per meter.

`python -m simulators.dlms_fleet --mix 1 --port 4060 --limit 20` rebuilds the fleet from
its seed (the same fleet as `meterguard simulate --mix 1`) and serves it through the DLMS
front-end `simulators.dlms_server`, with meter events in the fraud-detection log. That
front-end is built on a GPL-3.0 library, so it stays out of the meterguard process:
`meterguard simulate --live --protocol dlms` starts this module as a child process.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from simulators.cli import add_world_arguments, apply_world_arguments
from simulators.dlms_server import DlmsMeter, serve_meters
from simulators.live import LiveFleet, LiveMeter
from simulators.scenario import (
    DEFAULT_START,
    HOUR_S,
    Scenario,
    load_scenario,
    mix_scenario,
    parse_start,
)
from simulators.serve import SimClock

if TYPE_CHECKING:
    from simulators.meter import SimulatedMeter

#: Meter events -> IDIS fraud-log event codes (docs/PHYSICS.md, DLMS/COSEM).
IDIS_CODES = {
    "terminal_cover_open": 40,
    "terminal_cover_closed": 41,
    "magnetic_field": 42,
    "cover_open": 44,
    "cover_closed": 45,
}


def fraud_log(meter: LiveMeter, start_s: float, end_s: float) -> list[tuple[float, int]]:
    """Return the meter's tamper events between two simulated times as (time, IDIS code)."""
    return [
        (t, IDIS_CODES[name]) for t, name in meter.event_log(start_s, end_s) if name in IDIS_CODES
    ]


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """Build the scenario named on the command line (a file, or the seeded mix)."""
    start = None if args.start is None else parse_start(args.start, "--start")
    if args.scenario is not None:
        scenario = load_scenario(args.scenario, meters=args.meters, start_s=start)
    else:
        begin = DEFAULT_START if start is None else start
        scenario = mix_scenario(args.mix, args.meters or 150, 3.0, start_s=begin)
    return apply_world_arguments(args, scenario)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the fleet until killed; prints one line starting with "listening" when ready."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scenario", type=Path)
    source.add_argument("--mix", type=int, metavar="SEED")
    parser.add_argument("--meters", type=int, default=None, help="customer meters")
    parser.add_argument("--port", type=int, required=True, help="port of the first meter")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--hdlc", action="store_true", help="HDLC over TCP (default: wrapper)")
    parser.add_argument("--limit", type=int, default=None, help="serve the first N meters only")
    parser.add_argument("--only", action="append", default=[], help="serve this meter id")
    parser.add_argument("--speed", type=float, default=1.0, help="0 freezes simulated time")
    parser.add_argument("--start-h", type=float, default=24.0)
    add_world_arguments(parser)
    args = parser.parse_args(argv)
    scenario = scenario_from_args(args)
    fleet = LiveFleet.from_scenario(scenario)
    chosen = [fleet.meter(m) for m in args.only] if args.only else fleet.meters[: args.limit]
    clock = SimClock(scenario.start_s + args.start_h * HOUR_S, args.speed)
    begin = scenario.start_s - 1.0
    meters = [
        # DlmsMeter reads its model through `.meter` and `.read(t)`, which LiveMeter offers.
        DlmsMeter(
            cast("SimulatedMeter", lm),
            fraud_log(lm, begin, scenario.end_s),
            clock=clock,
            neutral=lm.measures_neutral,
        )
        for lm in chosen
    ]
    serve_meters(meters, args.port, hdlc=args.hdlc, host=args.host)
    last = args.port + len(meters) - 1
    print(f"listening on {args.host}:{args.port}-{last} ({len(meters)} meters)", flush=True)
    for k, lm in enumerate(chosen):
        print(f"{lm.meter.id} {args.port + k}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
