"""The simulators are an optional install: the commands that need them say how to add them."""

from __future__ import annotations

import importlib

from meterguard.errors import MeterguardError

#: How to get the simulators, from a clone of the repository.
INSTALL_SIMULATORS = "`make demo`, or `pip install -e ./simulators` in the repository"


class SimulatorsMissingError(MeterguardError):
    """A command needs the simulators package, which this installation lacks."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(
            f"`meterguard {command}` needs the simulators, which are not installed; "
            f"install them with {INSTALL_SIMULATORS}"
        )


def require_simulators(command: str) -> None:
    """Raise SimulatorsMissingError for `command` unless the simulators can be imported."""
    try:
        importlib.import_module("simulators")
    except ImportError as exc:
        if exc.name != "simulators":
            raise  # the simulators are there but something they need is not: say that
        raise SimulatorsMissingError(command) from None
