"""`meterguard worker`: judge a share of the partitions from the stream (docs/SCALING.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

NAME = "worker"
HELP = "run detectors on a share of the partitioned stream; alerts to the shared database"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the config file."""
    parser.add_argument(
        "--config", "-c", type=Path, default=Path("meterguard.toml"), help="TOML config file"
    )


def run(args: argparse.Namespace) -> int:
    """Take partitions, judge them and write alerts until Ctrl-C; JSON status lines on stdout."""
    from service.scale.process import load

    settings = load(args.config)

    async def main() -> None:
        from meterguard.model import MeterRegistry
        from meterguard.stores.factory import open_alert_database
        from service.scale.process import stop_event
        from service.scale.snapshots import SnapshotStore
        from service.scale.stream import connect
        from service.scale.worker import Worker

        stop = stop_event()
        registry = MeterRegistry(settings.all_meters())
        alert_db = open_alert_database(settings.storage)
        try:
            await alert_db.open()
            nc, js = await connect(settings.scale, "meterguard-worker")
            try:
                snapshots = None
                if settings.scale.snapshot_every_s:
                    snapshots = SnapshotStore(js, settings.scale)
                    await snapshots.open()
                worker = Worker(settings, registry, alert_db, js, sys.stdout, snapshots)
                await worker.run(stop)
            finally:
                await nc.drain()
        finally:
            await alert_db.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
