"""The `meterguard` command: run, demo, version."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import meterguard
from meterguard.errors import ConfigError
from meterguard.settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterguard",
        description="Real-time revenue-protection monitoring of electricity-meter telemetry.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the service from a config file")
    run.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path("meterguard.toml"),
        help="TOML config file (default: ./meterguard.toml)",
    )
    run.add_argument("--check", action="store_true", help="only check the config file, then exit")
    demo = sub.add_parser("demo", help="simulated fleet + service + API on 127.0.0.1")
    demo.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    demo.add_argument("--meters", type=int, default=36, help="simulated meters (default 36)")
    demo.add_argument("--seed", type=int, default=7, help="fleet seed (default 7)")
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the demo keeps its stores (default: a new temp folder)",
    )
    sub.add_parser("version", help="print the version")
    return parser


def _run(config: Path, check: bool) -> int:
    from meterguard.runtime import Runtime
    from meterguard.service import Service

    settings = load_settings(config)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        runtime = Runtime.open(settings)
        try:
            service = Service(runtime)  # builds detectors and sources: config errors here
            if check:
                print(
                    f"{config}: OK ({len(runtime.registry)} meters, "
                    f"{len(service.sources)} sources, "
                    f"{len(service.engine.detectors)} detectors)"
                )
                return
            await service.run()
        finally:
            await runtime.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `meterguard` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "version":
            print(f"meterguard {meterguard.__version__}")
            return 0
        if args.command == "run":
            return _run(args.config, args.check)
        if args.command == "demo":
            from meterguard import demo

            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="meterguard-demo-"))
            demo.main(data_dir, args.port, args.meters, args.seed)
            return 0
    except ConfigError as exc:
        print(f"meterguard: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
