"""`meterguard replay`: recorded telemetry files through the detectors, alerts to JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "replay"
HELP = "run DATA_DIR/readings.csv through the detectors and write alerts.jsonl"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the data folder, the output file and the options."""
    parser.add_argument(
        "data_dir", type=Path, metavar="DATA_DIR", help="has meters.csv, readings.csv"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="ALERTS.jsonl", help="where alerts go"
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="meterguard.toml whose [detectors] options to use (default: built-in defaults)",
    )
    parser.add_argument(
        "--span",
        type=float,
        default=300.0,
        help="data time per engine batch, s (default 300: one batch per poll round)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or report")


def _order_note(ahead: int, late: int) -> str:
    """Say how many of the bad rows were out of time order, when any were."""
    if not ahead and not late:
        return ""
    return f": {ahead} far ahead of the data time, {late} older than their meter's last row"


def run(args: argparse.Namespace) -> int:
    """Replay the folder and report what was read and raised."""
    from tqdm import tqdm

    from detectors.replay import replay
    from meterguard.settings import load_settings

    options = load_settings(args.config).detectors if args.config else {}
    bar = None
    readings = args.data_dir / "readings.csv"
    if not args.quiet and sys.stderr.isatty() and readings.exists():
        size = readings.stat().st_size
        bar = tqdm(total=size, unit="B", unit_scale=True, desc="replay", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    with args.out.open("w", encoding="utf-8") as out:
        result = replay(args.data_dir, out, options, span_s=args.span, progress=progress)
    if bar is not None:
        bar.close()
    stats = result.stats
    for bad in sorted(stats.bad_rows, key=lambda b: b.line):
        print(f"{args.data_dir / 'readings.csv'}:{bad.line}: {bad.reason}", file=sys.stderr)
    if stats.bad > len(stats.bad_rows):
        print(f"... and {stats.bad - len(stats.bad_rows)} more bad rows", file=sys.stderr)
    for code, count in sorted(stats.unknown_events.items()):
        print(f"unknown event code {code!r} seen {count} times (kept, not used)", file=sys.stderr)
    if not args.quiet:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind.items())) or "none"
        print(
            f"read {stats.rows} rows ({stats.good} used, {stats.bad} bad"
            f"{_order_note(stats.ahead, stats.late)}) in "
            f"{result.seconds:.1f} s; wrote {result.alerts} alerts "
            f"({result.still_open} still open) to {args.out}: {kinds}"
        )
    return 0
