"""Command-line options that shape the simulated world, shared by every simulator command.

`meterguard simulate` and the DLMS child process (`python -m simulators.dlms_fleet`) take
the same calendar, household and feeder options, so both build the same fleet.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.scenario import Scenario


def step_seconds(text: str) -> float:
    """Return seconds from a --step value such as 60, 90s, 1min, 15min or 1h."""
    from simulators.scenario import ScenarioError, parse_step

    try:
        return parse_step(text, "--step")
    except ScenarioError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _share(text: str) -> float:
    """Return a share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share between 0 and 1, not {text}")
    return value


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of the calendar, the households and the feeder meters."""
    world = parser.add_argument_group("calendar, households and network")
    world.add_argument(
        "--start",
        default=None,
        help="first reading: a date (midnight) or an RFC 3339 time (default 2026-01-05, a Monday)",
    )
    world.add_argument(
        "--country",
        default=None,
        help="public holidays of this country (ISO code, e.g. DE) or region (DE-BY): "
        "every customer keeps them like a Sunday",
    )
    world.add_argument(
        "--holiday",
        action="append",
        default=None,
        metavar="DATE",
        help="an extra public holiday (YYYY-MM-DD); repeatable",
    )
    world.add_argument(
        "--no-feeders",
        dest="feeders",
        action="store_false",
        default=None,
        help="no feeder (check) meters in the output; taps past every meter are left out",
    )
    world.add_argument(
        "--vacation-share",
        type=_share,
        default=None,
        help="share of homes away 2-10 days during the run (default 0.05)",
    )
    world.add_argument(
        "--heating-share",
        type=_share,
        default=None,
        help="share of homes and shops that heat electrically (default 0.15)",
    )


def apply_world_arguments(args: argparse.Namespace, scenario: Scenario) -> Scenario:
    """Return the scenario with the world options given on the command line applied."""
    from simulators.calendars import CalendarError, parse_date
    from simulators.scenario import ScenarioError

    changes: dict[str, Any] = {}
    if args.feeders is not None:
        changes["feeders"] = args.feeders
    for name in ("vacation_share", "heating_share"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.country is not None:
        country, _, region = args.country.partition("-")
        changes["country"], changes["region"] = country, region or None
    if args.holiday:
        try:
            extra = tuple(parse_date(d, "--holiday") for d in args.holiday)
        except CalendarError as exc:
            raise ScenarioError(str(exc)) from None
        changes["extra_holidays"] = scenario.options.extra_holidays + extra
    if changes:
        scenario.options = dataclasses.replace(scenario.options, **changes)
        try:
            scenario.options.calendar()
        except CalendarError as exc:
            raise ScenarioError(str(exc)) from None
    return scenario


def world_argv(args: argparse.Namespace) -> list[str]:
    """Return the world options of `args` as command-line arguments (for a child process)."""
    out: list[str] = []
    if args.start is not None:
        out += ["--start", str(args.start)]
    if args.country is not None:
        out += ["--country", args.country]
    for day in args.holiday or []:
        out += ["--holiday", day]
    if args.feeders is False:
        out.append("--no-feeders")
    for name in ("vacation_share", "heating_share"):
        if getattr(args, name) is not None:
            out += [f"--{name.replace('_', '-')}", f"{getattr(args, name)!r}"]
    return out
