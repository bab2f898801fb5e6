"""The `meterguard` command; each subcommand lives in service/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from meterguard.errors import MeterguardError
from service.commands import COMMAND_MODULES, Command
from service.optional import SimulatorsMissingError


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(
        prog="meterguard",
        description="Real-time revenue-protection monitoring of electricity-meter telemetry.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, Command] = {}
    for module_name in COMMAND_MODULES:
        module: Command = importlib.import_module(module_name)
        commands[module.NAME] = module
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        try:
            module.add_arguments(command)
        except SimulatorsMissingError as exc:
            # The command stays listed; run, it says what to install (main) instead of
            # argparse refusing the options it could not declare.
            command.description = f"{module.HELP}. {exc}"
            command.set_defaults(unavailable=exc)
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `meterguard` console script."""
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    unavailable: SimulatorsMissingError | None = getattr(args, "unavailable", None)
    if unavailable is not None:
        print(f"meterguard: {unavailable}", file=sys.stderr)
        return 2
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return commands[args.command].run(args)
    except MeterguardError as exc:
        # Errors meterguard raises on purpose say what is wrong; a traceback would bury it.
        print(f"meterguard: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a file the user named: a real failure, keep its traceback
        # A file or folder named on the command line cannot be opened: say which and why.
        print(f"meterguard: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
