"""Read and write meters.csv (docs/FORMATS.md): strict on meaning, loose on layout."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meterguard.errors import MeterCsvError, MeterguardError
from meterguard.model import Meter
from meterguard.textinput import Fail, open_input, read_lines, split_csv_line

REQUIRED_COLUMNS = ("meter", "service", "nominal_v")
OPTIONAL_COLUMNS = (
    "ct_primary_a", "generation", "transformer", "role", "customer_class", "contracted_kw",
    "rated_a",
)  # fmt: skip
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"generation must be true or false, not {text!r}")


def _row_to_meter(row: dict[str, str]) -> Meter:
    fields: dict[str, Any] = {
        "id": row["meter"].strip(),
        "service": row["service"].strip().lower(),
        "nominal_v": row["nominal_v"].strip(),
    }
    for column in OPTIONAL_COLUMNS:
        raw = (row.get(column) or "").strip()
        if not raw:
            continue
        fields[column] = _parse_bool(raw) if column == "generation" else raw
    return Meter.model_validate(fields)


class MetersFileError(MeterCsvError):
    """meters.csv cannot be read at all: missing, a directory, unreadable, not text."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.line = 0
        self.reason = reason
        MeterguardError.__init__(self, f"{path}: {reason}")


def read_header(
    lines: Iterator[tuple[int, str]], required: Sequence[str], fail: Fail
) -> tuple[list[str], int]:
    """Return the header's column names (first non-blank line) and its line number.

    A malformed header, a column named twice or a required column missing goes to `fail`.
    """
    for number, text in lines:
        if not text.strip():
            continue
        try:
            names = [c.strip() for c in split_csv_line(text)]
        except ValueError as exc:
            raise fail(number, f"header: {exc}") from None
        missing = [c for c in required if c not in names]
        if missing:
            raise fail(number, f"missing required column(s): {', '.join(missing)}")
        twice = sorted({c for c in names if c and names.count(c) > 1})
        if twice:
            raise fail(number, f"column(s) named twice: {', '.join(twice)}")
        return names, number
    raise fail(None, "no header row")


def read_rows(
    lines: Iterator[tuple[int, str]], header: list[str], fail: Fail
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, values by column) of each row that is not blank.

    Values are split per RFC 4180 within the line; a malformed line or one with more or
    fewer values than the header goes to `fail` with its line number.
    """
    for number, text in lines:
        if not text.strip():
            continue
        try:
            values = split_csv_line(text)
        except ValueError as exc:
            raise fail(number, str(exc)) from None
        if len(values) != len(header):
            raise fail(number, f"expected {len(header)} columns, found {len(values)}")
        if not any(v.strip() for v in values):
            continue
        yield number, dict(zip(header, values, strict=True))


def read_meters_csv(path: Path) -> list[Meter]:
    """Read every meter of a meters.csv; a bad row raises MeterCsvError with its line.

    The file may be stored as meterguard.textinput reads it (UTF-8 with or without a BOM,
    UTF-16/32 with a BOM, gzip); one that cannot be read raises MetersFileError.
    """

    def fail(line: int | None, reason: str) -> MeterCsvError:
        if line is None:
            return MetersFileError(str(path), reason)
        return MeterCsvError(str(path), line, reason)

    meters: list[Meter] = []
    seen: set[str] = set()
    with open_input(path, fail) as stream:
        lines = read_lines(stream, fail)
        header, _ = read_header(lines, REQUIRED_COLUMNS, fail)
        for line, row in read_rows(lines, header, fail):
            try:
                meter = _row_to_meter(row)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise MeterCsvError(str(path), line, f"{where}: {first['msg']}") from exc
            except ValueError as exc:
                raise MeterCsvError(str(path), line, str(exc)) from exc
            if meter.id in seen:
                raise MeterCsvError(str(path), line, f"meter {meter.id!r} appears twice")
            seen.add(meter.id)
            meters.append(meter)
    return meters


def write_meters_csv(path: Path, meters: Iterable[Meter]) -> None:
    """Write meters in the column order of docs/FORMATS.md."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
        for m in meters:
            writer.writerow(
                [
                    m.id,
                    m.service,
                    f"{m.nominal_v:g}",
                    "" if m.ct_primary_a is None else f"{m.ct_primary_a:g}",
                    "true" if m.generation else "false",
                    m.transformer or "",
                    m.role,
                    m.customer_class or "",
                    "" if m.contracted_kw is None else f"{m.contracted_kw:g}",
                    "" if m.rated_a is None else f"{m.rated_a:g}",
                ]
            )
