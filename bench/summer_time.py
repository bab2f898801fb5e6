"""Summer time seen by a fleet left at UTC: behaviour that moves an hour earlier mid-fleet.

Customers live by local time. A fleet whose `[calendar] timezone` is left at UTC sees their
day move an hour earlier in UTC when summer time begins (and back in autumn). This takes
fleets of bench/robustness.py (`--keep`) and makes, for each, a copy in which every reading
from `--at` on is the one the meter gave an hour later: the hour at `--at` is dropped, the
energy registers stay continuous, and the labels from then on move an hour earlier with the
data. It replays and scores the original and the copy with `meterguard replay` and
`meterguard evaluate`, and prints one line for each:

    .venv/bin/python bench/robustness.py --keep --out cells --cadences 15min --seeds 1
    .venv/bin/python -m bench.summer_time cells/sim-15min-feeders-seed1 [--at ...]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.robustness import line, score_folder

HOUR = timedelta(hours=1)
REGISTERS = ("e_imp", "e_exp")


def _time(text: str) -> datetime:
    """Return a replay-format time (RFC 3339 or epoch seconds) as an aware datetime."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _register_jumps(readings: Path, at: datetime) -> dict[tuple[str, str], float]:
    """Per meter and register: what the dropped hour adds beyond one ordinary step."""
    last: dict[tuple[str, str], list[float]] = {}
    first_after: dict[tuple[str, str], float] = {}
    for row in _rows(readings):
        when = _time(row["ts"])
        for register in REGISTERS:
            value = row.get(register) or ""
            if not value:
                continue
            key = (row["meter"], register)
            if when < at:
                last.setdefault(key, []).append(float(value))
                del last[key][:-2]
            elif when >= at + HOUR and key not in first_after:
                first_after[key] = float(value)
    jumps = {}
    for key, after in first_after.items():
        before = last.get(key, [])
        if before:
            step = before[-1] - before[-2] if len(before) == 2 else 0.0
            jumps[key] = after - before[-1] - step
    return jumps


def shift(source: Path, target: Path, at: datetime) -> None:
    """Write `source`'s fleet to `target` with its behaviour an hour earlier from `at` on."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "meters.csv", target / "meters.csv")
    readings = source / "readings.csv"
    jumps = _register_jumps(readings, at)
    with (target / "readings.csv").open("w", newline="", encoding="utf-8") as out:
        writer: csv.DictWriter[str] | None = None
        for row in _rows(readings):
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
            when = _time(row["ts"])
            if at <= when < at + HOUR:
                continue  # the hour the clocks skip
            if when >= at:
                row["ts"] = _stamp(when - HOUR)
                for register in REGISTERS:
                    jump = jumps.get((row["meter"], register))
                    if row.get(register) and jump is not None:
                        row[register] = f"{float(row[register]) - jump:.6f}"
            writer.writerow(row)
    labels = list(_rows(source / "labels.csv"))
    with (target / "labels.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(labels[0]) if labels else ["meter"])
        writer.writeheader()
        for label in labels:
            for end in ("start", "end"):
                when = _time(label[end])
                if when >= at:
                    label[end] = _stamp(when - HOUR)
            writer.writerow(label)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", nargs="+", type=Path, help="fleet folders (bench/robustness.py)")
    parser.add_argument(
        "--at", default="2026-05-03T01:00:00Z", help="when the hour is skipped (RFC 3339)"
    )
    parser.add_argument("--country", default="DE", help="public holidays for replay")
    args = parser.parse_args()
    at = _time(args.at)
    work = Path(tempfile.mkdtemp(prefix="summer-time-"))
    try:
        for cell in args.cells:
            for label, folder in (("", cell), ("+summer", work / cell.name)):
                if label:
                    shift(cell, folder, at)
                else:
                    folder = work / f"{cell.name}-as-is"
                    shutil.copytree(cell, folder, ignore=shutil.ignore_patterns("alerts*"))
                row: dict[str, Any] = {
                    "cell": cell.name + label,
                    **score_folder(folder, args.country),
                    "simulate_s": 0.0,
                    "replay_s": 0.0,
                }
                print(line(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
