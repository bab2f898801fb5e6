"""`meterguard run`: the service from a config file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from meterguard.settings import load_settings

log = logging.getLogger(__name__)

NAME = "run"
HELP = "run the service from a config file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the config file and --check."""
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path("meterguard.toml"),
        help="TOML config file (default: ./meterguard.toml)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only check the config file, then exit"
    )


def run(args: argparse.Namespace) -> int:
    """Load the config, build every part, and run until Ctrl-C (or only check with --check)."""
    from collector.registry import typed_sources
    from meterguard.model import MeterRegistry
    from meterguard.runtime import Runtime
    from service.supervisor import Service, stop_on_signals

    settings = load_settings(args.config)
    # The sources' own settings are checked before any store is opened.
    typed_sources(settings, MeterRegistry(settings.all_meters()))
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warning = settings.calendar.missing_holidays()
    if warning:
        logging.getLogger("meterguard").warning(warning)

    async def main() -> None:
        runtime = Runtime.open(settings)
        try:
            service = Service(runtime)  # builds detectors and sources: config errors here
            if args.check:
                print(
                    f"{args.config}: OK ({len(runtime.registry)} meters, "
                    f"{len(service.sources)} sources, "
                    f"{len(service.engine.detectors)} detectors)"
                )
                return
            stop_on_signals(service)
            await service.run()
        finally:
            # Flushes buffered readings and alert writes: what makes a stop lose nothing.
            await runtime.close()
            log.info("meterguard stopped; stores flushed and closed")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
