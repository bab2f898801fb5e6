"""`meterguard demo`: simulated fleet + service + API on 127.0.0.1."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from service.optional import require_simulators

NAME = "demo"
HELP = "simulated fleet + service + API on 127.0.0.1, until Ctrl-C"


#: Customers the demo's story needs: two transformers, each kind of service.
MIN_CUSTOMERS = 30


def _customers(raw: str) -> int:
    value = int(raw)
    if value < MIN_CUSTOMERS:
        raise argparse.ArgumentTypeError(f"the demo's story needs {MIN_CUSTOMERS} at least")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the demo's options."""
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    parser.add_argument(
        "--meters",
        type=_customers,
        default=48,
        help=f"simulated customers, {MIN_CUSTOMERS} at least (default 48)",
    )
    parser.add_argument("--seed", type=int, default=7, help="fleet seed (default 7)")
    parser.add_argument(
        "--pace",
        type=float,
        default=40.0,
        help="seconds between the story's live thefts (default 40)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the demo keeps its stores (default: a new temp folder)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C (SimulatorsMissingError without the simulators)."""
    require_simulators(NAME)
    from service import demo

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("pymodbus", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="meterguard-demo-"))
    demo.main(data_dir, args.port, args.meters, args.seed, args.pace)
    return 0
