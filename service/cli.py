"""The `meterguard` command; each subcommand lives in service/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from meterguard.errors import MeterguardError
from service.commands import COMMAND_MODULES, Command


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
        module.add_arguments(sub.add_parser(module.NAME, help=module.HELP, description=module.HELP))
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `meterguard` console script."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
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
