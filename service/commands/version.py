"""`meterguard version`: print the version."""

from __future__ import annotations

import argparse

import meterguard

NAME = "version"
HELP = "print the version"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Take no arguments."""


def run(args: argparse.Namespace) -> int:
    """Print the version."""
    print(f"meterguard {meterguard.__version__}")
    return 0
