"""Read and write meters.csv (formats/TELEMETRY.md): strict on meaning, loose on layout."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meterguard.errors import MeterCsvError
from meterguard.model import Meter

REQUIRED_COLUMNS = ("meter", "service", "nominal_v")
OPTIONAL_COLUMNS = (
    "ct_primary_a", "generation", "transformer", "role", "customer_class", "contracted_kw",
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


def read_meters_csv(path: Path) -> list[Meter]:
    """Read every meter of a meters.csv; a bad row raises MeterCsvError with its line."""
    meters: list[Meter] = []
    seen: set[str] = set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise MeterCsvError(str(path), 1, f"missing required column(s): {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
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
    """Write meters in the column order of TELEMETRY.md."""
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
                ]
            )
