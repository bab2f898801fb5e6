"""`meterguard ingest`: the sources' readings, checked, to the partitioned stream (NATS)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meterguard.settings import Settings

NAME = "ingest"
HELP = "publish readings to the partitioned stream for `meterguard worker` (docs/SCALING.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the config file and the recorded-file mode."""
    parser.add_argument(
        "--config", "-c", type=Path, default=Path("meterguard.toml"), help="TOML config file"
    )
    parser.add_argument(
        "--readings",
        type=Path,
        metavar="DIR",
        help="publish DIR/readings.csv once (a backfill) instead of running the sources",
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="with --readings: readings per second (pace)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the sources (or publish a recorded file) until Ctrl-C."""
    from service.scale.process import load

    settings = load(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_recorded(settings, args) if args.readings else _live(settings))
    return 0


async def _recorded(settings: Settings, args: argparse.Namespace) -> None:
    from meterguard.model import MeterRegistry
    from service.scale.ingest import Publisher, publish_recorded
    from service.scale.stream import connect

    registry = MeterRegistry(settings.all_meters())
    nc, js = await connect(settings.scale, "meterguard-ingest")
    try:
        publisher = Publisher(js, settings.scale, registry)
        stats = await publish_recorded(
            publisher, args.readings, settings.validation, rate=args.rate
        )
    finally:
        await nc.drain()
    print(
        json.dumps(
            {
                "readings": stats.readings,
                "messages": stats.messages,
                "bytes": stats.bytes,
                "seconds": round(stats.seconds, 3),
            }
        )
    )


async def _live(settings: Settings) -> None:
    from meterguard.runtime import Runtime
    from meterguard.validation import ReadingValidator
    from service.scale.ingest import Publisher, pump_source
    from service.scale.process import stop_event
    from service.scale.stream import connect
    from service.supervisor import build_sources

    stop = stop_event()
    runtime = Runtime.open(settings)  # series store and, for [leases], the alert database
    try:
        sources = build_sources(runtime)
        nc, js = await connect(settings.scale, "meterguard-ingest")
        try:
            publisher = Publisher(js, settings.scale, runtime.registry)
            validator = ReadingValidator(runtime.registry, settings.validation)
            # Series are written here, once per reading; the workers keep only alerts.
            pumps = [
                asyncio.create_task(
                    pump_source(s, publisher, validator, (runtime.series.write,), stop)
                )
                for s in sources
            ]
            await stop.wait()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            await nc.drain()
    finally:
        await runtime.close()
