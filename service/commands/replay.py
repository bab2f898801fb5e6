"""`meterguard replay`: recorded telemetry files through the detectors, alerts to JSON lines."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pydantic import ValidationError

from meterguard.errors import MeterguardError

if TYPE_CHECKING:
    from meterguard.calendar import CalendarSettings
    from service.telemetry_csv import ReadStats

NAME = "replay"
HELP = "run DATA_DIR/readings.csv through the detectors and write alerts.jsonl"
#: Bad rows (and unknown event codes) printed one by one; the rest are counted.
SHOWN_BAD_ROWS = 20


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
    place = parser.add_argument_group(
        "calendar", "where the fleet is (overrides the config's [calendar])"
    )
    place.add_argument("--country", default=None, help="public holidays of this ISO country")
    place.add_argument("--region", default=None, help="... and of this subdivision of it")
    place.add_argument(
        "--holiday",
        action="append",
        default=None,
        metavar="YYYY-MM-DD",
        help="one more day judged as a Sunday (repeatable)",
    )
    place.add_argument("--timezone", default=None, help="IANA time zone of the fleet")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or report")


def _order_note(ahead: int, late: int) -> str:
    """Say how many of the bad rows were out of time order, when any were."""
    if not ahead and not late:
        return ""
    return f": {ahead} far ahead of the data time, {late} older than their meter's last row"


def _calendar(args: argparse.Namespace, configured: CalendarSettings) -> CalendarSettings:
    """Return the config's calendar with the command line's choices on top."""
    from meterguard.calendar import CalendarSettings
    from meterguard.errors import ConfigError

    changes = {
        key: value
        for key, value in (
            ("country", args.country),
            ("region", args.region),
            ("extra_holidays", args.holiday),
            ("timezone", args.timezone),
        )
        if value is not None
    }
    if not changes:
        return configured
    try:
        return CalendarSettings.model_validate({**configured.model_dump(), **changes})
    except ValidationError as exc:
        problems = [(f"--{e['loc'][0]}".replace("_", "-"), e["msg"]) for e in exc.errors()]
        raise ConfigError("command line", problems) from exc


class PathError(MeterguardError):
    """A folder or file named on the command line cannot be used."""


def check_data_dir(data_dir: Path) -> None:
    """Refuse a data folder that is missing or not a folder, before anything is read."""
    if not data_dir.exists():
        raise PathError(f"{data_dir}: no such folder")
    if not data_dir.is_dir():
        raise PathError(f"{data_dir}: not a folder (DATA_DIR holds meters.csv, readings.csv)")


@contextlib.contextmanager
def _output(path: Path) -> Iterator[TextIO]:
    """Write to a file beside `path`, moved over it only once the replay has succeeded.

    A replay stopped by bad input leaves an earlier ALERTS.jsonl as it was. Anything but a
    regular file (a pipe, /dev/stdout) is written directly.
    """
    direct = path.exists() and not path.is_file()
    partial = path if direct else path.with_name(f".{path.name}.partial")
    try:
        out = partial.open("w", encoding="utf-8")
    except OSError as exc:
        raise PathError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    if direct:
        with out:
            yield out
        return
    try:
        with out:
            yield out
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _report_bad_rows(readings: Path, stats: ReadStats) -> None:
    """Print the first bad rows by line, then how many there were in all."""
    for bad in stats.bad_rows[:SHOWN_BAD_ROWS]:
        print(f"{readings}:{bad.line}: {bad.reason}", file=sys.stderr)
    if stats.bad > SHOWN_BAD_ROWS:
        print(
            f"... {stats.bad} bad rows in all (the first {SHOWN_BAD_ROWS} shown), skipped",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    """Replay the folder and report what was read and raised."""
    from tqdm import tqdm

    from detectors.rest_days import describe
    from meterguard.settings import load_settings
    from meterguard.textinput import locate
    from service.replay import replay

    settings = load_settings(args.config)
    options = settings.detectors if args.config else {}
    calendar = _calendar(args, settings.calendar)
    check_data_dir(args.data_dir)
    bar = None
    readings = locate(args.data_dir / "readings.csv")
    if not args.quiet and sys.stderr.isatty() and readings.is_file():
        size = readings.stat().st_size
        bar = tqdm(total=size, unit="B", unit_scale=True, desc="replay", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        with _output(args.out) as out:
            result = replay(
                args.data_dir,
                out,
                options,
                span_s=args.span,
                progress=progress,
                calendar=calendar,
            )
    finally:
        if bar is not None:
            bar.close()
    stats = result.stats
    _report_bad_rows(readings, stats)
    warning = calendar.missing_holidays()
    if warning:
        print(f"meterguard replay: warning: {warning}", file=sys.stderr)
    for days, taken in ((result.rested_taken, True), (result.rested, False)):
        if days:
            extra = " ".join(f"--holiday {day.isoformat()}" for day in days)
            print(
                f"meterguard replay: warning: {describe(days, taken=taken)}; if they are "
                f"holidays, replay with {extra} (or add them to [calendar] extra_holidays)",
                file=sys.stderr,
            )
    checked = result.validation
    if checked.values_out_of_range:
        figures = ", ".join(f"{q} {n}" for q, n in sorted(checked.values_out_of_range.items()))
        print(f"values beyond physical bounds, taken as not measured: {figures}", file=sys.stderr)
    for meter, count in sorted(checked.clock_off.items()):
        print(
            f"meter {meter}: {count} readings refused for their time (clock off)", file=sys.stderr
        )
    codes = stats.unknown_events.most_common()
    for code, count in codes[:SHOWN_BAD_ROWS]:
        print(f"unknown event code {code!r} seen {count} times (kept, not used)", file=sys.stderr)
    if len(codes) > SHOWN_BAD_ROWS:
        print(f"... {len(codes)} unknown event codes in all", file=sys.stderr)
    if not args.quiet:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.by_kind.items())) or "none"
        stored = ", ".join(filter(None, [stats.compression, stats.encoding]))
        source = "" if stored == "UTF-8" else f" of {stored} text"
        print(
            f"read {stats.rows} rows{source} ({stats.good} used, {stats.bad} bad"
            f"{_order_note(stats.ahead, stats.late)}) in "
            f"{result.seconds:.1f} s; wrote {result.alerts} alerts "
            f"({result.still_open} still open) to {args.out}: {kinds}"
        )
    if stats.rows and not stats.good:
        # Every row refused is no recording at all: an empty alerts file must not pass.
        print(
            f"meterguard: {readings}: none of its {stats.rows} rows could be used",
            file=sys.stderr,
        )
        return 2
    return 0
