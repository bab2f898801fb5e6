"""The subcommands of `meterguard`, one module each: `add_parser(sub)` and `run(args)`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol


class Command(Protocol):
    """What a command module provides."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


Runner = Callable[[argparse.Namespace], int]

#: Command modules in the order `meterguard --help` lists them.
COMMAND_MODULES = (
    "service.commands.run",
    "service.commands.demo",
    "service.commands.ingest",
    "service.commands.worker",
    "service.commands.replay",
    "service.commands.evaluate",
    "service.commands.simulate",
    "service.commands.db",
    "service.commands.version",
)
