"""Scoring of alerts against ground-truth labels, exactly as formats/TELEMETRY.md defines it."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from meterguard.errors import MeterguardError
from meterguard.meters_csv import read_meters_csv
from meterguard.model import AlertKind, Meter
from meterguard.telemetry_csv import _times, parse_time_text

#: An alert detects an incident when it starts this long before the incident at most...
EARLY_S = 5 * 60.0
#: ... or at most this long after the incident's end.
LATE_S = 30 * 60.0
#: Kinds that name the same physical incident (TELEMETRY.md).
EQUIVALENT: dict[str, frozenset[str]] = {
    "bypass": frozenset({"bypass", "imbalance"}),
    "imbalance": frozenset({"imbalance", "bypass"}),
    "reversal": frozenset({"reversal", "phase_shift"}),
    "phase_shift": frozenset({"phase_shift", "reversal"}),
}
DAY_S = 86_400.0


class ScoringInputError(MeterguardError, ValueError):
    """labels.csv or alerts.jsonl cannot be used; names the file and line."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True, slots=True)
class Label:
    """One injected incident."""

    meter: str
    kind: str
    start: float
    end: float
    phase: int | None = None


@dataclass(frozen=True, slots=True)
class ScoredAlert:
    """The fields of an alert that scoring reads."""

    meter: str
    kind: str
    start: float


@dataclass(slots=True)
class KindScore:
    """Figures for one kind."""

    incidents: int = 0
    detected: int = 0
    diagnosed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    alerts: int = 0
    false_alarms: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the figures with the recalls and the median latency worked out."""
        return {
            "incidents": self.incidents,
            "detected": self.detected,
            "diagnosed": self.diagnosed,
            "detection_recall": _ratio(self.detected, self.incidents),
            "diagnosis_recall": _ratio(self.diagnosed, self.incidents),
            "median_latency_s": (statistics.median(self.latencies_s) if self.latencies_s else None),
            "alerts": self.alerts,
            "false_alarms": self.false_alarms,
        }


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def read_labels(path: Path) -> list[Label]:
    """Read labels.csv; an unusable row is a ScoringInputError naming its line."""
    labels: list[Label] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("meter", "kind", "start") if c not in reader.fieldnames]
        if missing:
            raise ScoringInputError(str(path), 1, f"missing column(s): {', '.join(missing)}")
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            try:
                kind = AlertKind((row["kind"] or "").strip()).value
                start = parse_time_text(row["start"] or "")
                end_text = (row.get("end") or "").strip()
                end = parse_time_text(end_text) if end_text else math.inf
                phase_text = (row.get("phase") or "").strip()
                phase = int(float(phase_text)) if phase_text else None
            except ValueError as exc:
                raise ScoringInputError(str(path), reader.line_num, str(exc)) from exc
            labels.append(Label((row["meter"] or "").strip(), kind, start, end, phase))
    return labels


def _time_value(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_time_text(value)
    raise ValueError(f"not a time: {value!r}")


def read_alerts(path: Path) -> list[ScoredAlert]:
    """Read alerts.jsonl; an unusable line is a ScoringInputError naming it."""
    alerts: list[ScoredAlert] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                alerts.append(
                    ScoredAlert(
                        meter=str(record["meter"]),
                        kind=AlertKind(record["kind"]).value,
                        start=_time_value(record["start"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ScoringInputError(str(path), number, f"not an alert: {exc}") from exc
    return alerts


def data_span_s(readings: Path) -> float:
    """Return the data time readings.csv covers, s (its ts column only)."""
    table = pacsv.read_csv(
        readings,
        convert_options=pacsv.ConvertOptions(
            include_columns=["ts"], column_types={"ts": pa.string()}, strings_can_be_null=True
        ),
    )
    if table.num_rows == 0:
        return 0.0
    times, _bad = _times(table.column("ts"))
    finite = times[np.isfinite(times)]
    return float(finite.max() - finite.min()) if finite.size else 0.0


def _matches(alert: ScoredAlert, label: Label) -> bool:
    return label.start - EARLY_S <= alert.start <= label.end + LATE_S


def score(
    meters: Sequence[Meter],
    labels: Sequence[Label],
    alerts: Iterable[ScoredAlert],
    span_s: float,
) -> dict[str, Any]:
    """Score alerts against labels: recalls, precision, false alarms, latencies."""
    alert_list = list(alerts)
    by_meter: dict[str, list[ScoredAlert]] = {}
    for alert in alert_list:
        by_meter.setdefault(alert.meter, []).append(alert)
    labels_by_meter: dict[str, list[Label]] = {}
    for label in labels:
        labels_by_meter.setdefault(label.meter, []).append(label)
    kinds: dict[str, KindScore] = {}
    for label in labels:
        ks = kinds.setdefault(label.kind, KindScore())
        ks.incidents += 1
        found = sorted(
            (a for a in by_meter.get(label.meter, []) if _matches(a, label)),
            key=lambda a: a.start,
        )
        if not found:
            continue
        ks.detected += 1
        ks.latencies_s.append(found[0].start - label.start)
        accepted = EQUIVALENT.get(label.kind, frozenset({label.kind}))
        if any(a.kind in accepted for a in found):
            ks.diagnosed += 1
    fleet = {m.id: m for m in meters}
    customers_of: dict[str, list[str]] = {}
    for m in meters:
        if m.role == "customer" and m.transformer:
            customers_of.setdefault(m.transformer, []).append(m.id)
    true_alerts = 0
    for alert in alert_list:
        ks = kinds.setdefault(alert.kind, KindScore())
        ks.alerts += 1
        true = any(_matches(alert, lab) for lab in labels_by_meter.get(alert.meter, []))
        meter = fleet.get(alert.meter)
        if (
            not true
            and alert.kind == AlertKind.ENERGY_BALANCE.value
            and meter is not None
            and meter.role == "feeder"
            and meter.transformer
        ):
            true = any(
                _matches(alert, lab)
                for customer in customers_of.get(meter.transformer, [])
                for lab in labels_by_meter.get(customer, [])
            )
        if true:
            true_alerts += 1
        else:
            ks.false_alarms += 1
    incidents = len(labels)
    detected = sum(k.detected for k in kinds.values())
    diagnosed = sum(k.diagnosed for k in kinds.values())
    false_alarms = len(alert_list) - true_alerts
    meter_days = len(meters) * span_s / DAY_S
    return {
        "incidents": incidents,
        "alerts": len(alert_list),
        "detected": detected,
        "diagnosed": diagnosed,
        "detection_recall": _ratio(detected, incidents),
        "diagnosis_recall": _ratio(diagnosed, incidents),
        "precision": _ratio(true_alerts, len(alert_list)),
        "false_alarms": false_alarms,
        "meter_days": meter_days,
        "false_alarms_per_1000_meter_days": (
            None if meter_days <= 0 else 1000.0 * false_alarms / meter_days
        ),
        "per_kind": {kind: kinds[kind].as_dict() for kind in sorted(kinds)},
    }


def evaluate(data_dir: Path, alerts_path: Path) -> dict[str, Any]:
    """Score an alerts.jsonl against DATA_DIR's labels.csv, meters.csv and readings span."""
    meters = read_meters_csv(data_dir / "meters.csv")
    labels = read_labels(data_dir / "labels.csv")
    alerts = read_alerts(alerts_path)
    readings = data_dir / "readings.csv"
    span = data_span_s(readings) if readings.exists() else 0.0
    return score(meters, labels, alerts, span)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def summary_line(result: dict[str, Any]) -> str:
    """Return the one-line summary that ends the report."""
    return (
        f"detection recall {_fmt(result['detection_recall'])}, "
        f"diagnosis recall {_fmt(result['diagnosis_recall'])}, "
        f"precision {_fmt(result['precision'])}, "
        f"{_fmt(result['false_alarms_per_1000_meter_days'], '{:.2f}')} false alarms per "
        f"1,000 meter-days ({result['incidents']} incidents, {result['alerts']} alerts, "
        f"{result['meter_days']:.0f} meter-days)"
    )


def report(result: dict[str, Any]) -> str:
    """Render the per-kind table and the summary as text."""
    head = (
        f"{'kind':<17}{'incidents':>10}{'detected':>10}{'diagnosed':>10}"
        f"{'det.recall':>11}{'diag.recall':>12}{'median latency':>16}{'alerts':>8}"
        f"{'false':>7}"
    )
    lines = [head, "-" * len(head)]
    for kind, k in result["per_kind"].items():
        lines.append(
            f"{kind:<17}{k['incidents']:>10}{k['detected']:>10}{k['diagnosed']:>10}"
            f"{_fmt(k['detection_recall']):>11}{_fmt(k['diagnosis_recall']):>12}"
            f"{_minutes(k['median_latency_s']):>16}{k['alerts']:>8}{k['false_alarms']:>7}"
        )
    lines.append("-" * len(head))
    lines.append(summary_line(result))
    return "\n".join(lines)
