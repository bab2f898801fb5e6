"""`meterguard evaluate`: score an alerts.jsonl against DATA_DIR/labels.csv."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "evaluate"
HELP = "score ALERTS.jsonl against DATA_DIR/labels.csv (rules in docs/FORMATS.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the data folder, the alerts file, --json and --incidents."""
    parser.add_argument(
        "data_dir", type=Path, metavar="DATA_DIR", help="has meters.csv, labels.csv, readings.csv"
    )
    parser.add_argument("alerts", type=Path, metavar="ALERTS.jsonl", help="alerts to score")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--incidents",
        action="store_true",
        help="also list every incident: its start and weekday, found or missed, time to raise",
    )


def run(args: argparse.Namespace) -> int:
    """Print per-kind and overall figures, ending with a one-line summary."""
    from service.commands.replay import check_data_dir
    from service.evaluate import evaluate, incidents_report, report, summary_line

    check_data_dir(args.data_dir)
    result = evaluate(args.data_dir, args.alerts)
    if args.json:
        print(json.dumps({**result, "summary": summary_line(result)}, indent=2))
    else:
        if args.incidents:
            print(incidents_report(result))
            print()
        print(report(result))
    return 0
