"""Scoring of alerts against ground-truth labels, as docs/FORMATS.md (Scoring) states it."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from meterguard.errors import MeterguardError
from meterguard.meters_csv import read_header, read_meters_csv, read_rows
from meterguard.model import QUANTITY_INDEX, AlertKind, Meter, MeterRegistry
from meterguard.textinput import Fail, locate, open_input, read_lines
from meterguard.timefmt import rfc3339
from service.telemetry_csv import ReadingsReader, parse_time_text

#: An alert detects an incident when it starts this long before the incident at most...
EARLY_S = 5 * 60.0
#: ... or at most this long after the incident's end.
LATE_S = 30 * 60.0
DAY_S = 86_400.0


class ScoringInputError(MeterguardError, ValueError):
    """labels.csv or alerts.jsonl cannot be used; names the file and line (if it is a line)."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class Label:
    """One injected incident."""

    meter: str
    kind: str
    start: float
    end: float
    phase: int | None = None
    #: The label's magnitude column as written (its meaning depends on the kind).
    magnitude: float | None = None


@dataclass(frozen=True, slots=True)
class ScoredAlert:
    """The fields of an alert that scoring reads."""

    meter: str
    kind: str
    start: float
    #: Data time it was raised; None when the file does not say.
    raised: float | None = None


#: The kinds whose detectors read the physics of each reading; their timing is summed up
#: together, apart from consumption_drop's, which waits for hours of baseline by design.
PHYSICS_KINDS: tuple[str, ...] = (
    AlertKind.BYPASS.value,
    AlertKind.REVERSAL.value,
    AlertKind.VOLTAGE_LOSS.value,
    AlertKind.PHASE_SHIFT.value,
    AlertKind.TAMPER.value,
)
#: Metering that does not fit the load: judged per reading, raised after 30 minutes.
FITNESS_KINDS: tuple[str, ...] = (
    AlertKind.WIRING_MISFIT.value,
    AlertKind.OVERLOAD.value,
    AlertKind.OVER_DEMAND.value,
)
TIMING_GROUPS: dict[str, tuple[str, ...]] = {
    "physics": PHYSICS_KINDS,
    "consumption_drop": (AlertKind.CONSUMPTION_DROP.value,),
    "fitness": FITNESS_KINDS,
}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(slots=True)
class KindScore:
    """Figures for one kind."""

    incidents: int = 0
    detected: int = 0
    diagnosed: int = 0
    #: Per detected incident: start of its first detecting alert - incident start.
    latencies_s: list[float] = field(default_factory=list)
    #: Per detected incident whose first detecting alert says when it was raised:
    #: raised - incident start.
    raise_times_s: list[float] = field(default_factory=list)
    alerts: int = 0
    false_alarms: int = 0
    #: Alerts (any kind) matching the detected incidents of this kind: duplicates show.
    alerts_on_detected: int = 0
    #: Of those, the alerts of a kind that diagnoses the incident.
    diagnosing_alerts: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the figures with the recalls and the median timings worked out.

        `median_latency_s` is the median onset error (alert start - incident start).
        """
        return {
            "incidents": self.incidents,
            "detected": self.detected,
            "diagnosed": self.diagnosed,
            "detection_recall": _ratio(self.detected, self.incidents),
            "diagnosis_recall": _ratio(self.diagnosed, self.incidents),
            "median_latency_s": _median(self.latencies_s),
            "median_time_to_raise_s": _median(self.raise_times_s),
            "incidents_with_raise_time": len(self.raise_times_s),
            "alerts": self.alerts,
            "false_alarms": self.false_alarms,
            "alerts_per_detected_incident": _float_ratio(self.alerts_on_detected, self.detected),
            "diagnosing_alerts_per_diagnosed_incident": _float_ratio(
                self.diagnosing_alerts, self.diagnosed
            ),
        }


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _float_ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 3)


def _fail(path: Path) -> Fail:
    def fail(line: int | None, reason: str) -> ScoringInputError:
        return ScoringInputError(str(path), line, reason)

    return fail


def read_labels(path: Path) -> list[Label]:
    """Read labels.csv; an unusable row is a ScoringInputError naming its line.

    Stored as meterguard.textinput reads it (UTF-8, UTF-16/32 with a BOM, gzip); a file
    that cannot be read at all is a ScoringInputError too.
    """
    fail = _fail(path)
    labels: list[Label] = []
    with open_input(path, fail) as stream:
        lines = read_lines(stream, fail)
        header, _ = read_header(lines, ("meter", "kind", "start"), fail)
        for line, row in read_rows(lines, header, fail):
            try:
                kind = AlertKind(row["kind"].strip()).value
                start = parse_time_text(row["start"])
                end_text = row.get("end", "").strip()
                end = parse_time_text(end_text) if end_text else math.inf
                phase_text = row.get("phase", "").strip()
                phase = int(float(phase_text)) if phase_text else None
            except (ValueError, OverflowError) as exc:
                raise ScoringInputError(str(path), line, str(exc)) from exc
            # Not scored: a magnitude that is not a number is only left out of the listing.
            magnitude = _number_or_none(row.get("magnitude", ""))
            labels.append(Label(row["meter"].strip(), kind, start, end, phase, magnitude))
    return labels


def _number_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _time_value(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_time_text(value)
    else:
        raise ValueError(f"not a time: {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite time: {value!r}")
    return seconds


def read_alerts(path: Path) -> list[ScoredAlert]:
    """Read alerts.jsonl; an unusable line is a ScoringInputError naming it.

    Each non-blank line is one JSON object with at least meter, kind and start. The file
    may be stored as meterguard.textinput reads it; one that cannot be read at all is a
    ScoringInputError too.
    """
    fail = _fail(path)
    alerts: list[ScoredAlert] = []
    with open_input(path, fail) as stream:
        for number, line in read_lines(stream, fail):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")
                raised = record.get("raised")
                alerts.append(
                    ScoredAlert(
                        meter=str(record["meter"]),
                        kind=AlertKind(record["kind"]).value,
                        start=_time_value(record["start"]),
                        raised=None if raised is None else _time_value(raised),
                    )
                )
            except KeyError as exc:
                raise ScoringInputError(str(path), number, f"not an alert: no {exc}") from exc
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                raise ScoringInputError(str(path), number, f"not an alert: {exc}") from exc
    return alerts


@dataclass(slots=True)
class Coverage:
    """What readings.csv holds per meter: its span of good rows, and neutral measurement."""

    #: Per meter id: data time from its first to its last good reading, s.
    span_s: dict[str, float] = field(default_factory=dict)
    #: Meters with at least one finite `in` (neutral current) reading.
    neutral_measured: set[str] = field(default_factory=set)
    bad_rows: int = 0


def read_coverage(readings: Path, meters: Sequence[Meter]) -> Coverage:
    """Stream readings.csv (the reader replay uses) and return each meter's coverage.

    Only good rows count: a row replay rejects (short, not a number, unknown meter, far
    ahead or late) adds no meter-days here either.
    """
    registry = MeterRegistry(meters)
    first = np.full(len(registry), np.inf)
    last = np.full(len(registry), -np.inf)
    neutral = np.zeros(len(registry), dtype=np.bool_)
    reader = ReadingsReader(readings, registry)
    row_in = QUANTITY_INDEX["in"]
    for batch in reader:
        np.minimum.at(first, batch.slot, batch.ts)
        np.maximum.at(last, batch.slot, batch.ts)
        neutral[batch.slot[np.isfinite(batch.values[row_in])]] = True
    coverage = Coverage(bad_rows=reader.stats.bad)
    for slot, meter in enumerate(registry):
        if np.isfinite(first[slot]):
            coverage.span_s[meter.id] = float(last[slot] - first[slot])
        if neutral[slot]:
            coverage.neutral_measured.add(meter.id)
    return coverage


def accepted_kinds(label: Label, neutral_measured: bool) -> frozenset[str]:
    """Return the alert kinds that diagnose a label (docs/FORMATS.md, Scoring).

    Its own kind; a reversal may show as `phase_shift`; a ONE-phase bypass (the label
    names a phase) may show as `imbalance` on a meter without neutral measurement. No
    other equivalence: an imbalance is not diagnosed by a bypass alert, nor a phase shift
    by a reversal alert.
    """
    if label.kind == AlertKind.REVERSAL.value:
        return frozenset({label.kind, AlertKind.PHASE_SHIFT.value})
    if label.kind == AlertKind.BYPASS.value and label.phase and not neutral_measured:
        return frozenset({label.kind, AlertKind.IMBALANCE.value})
    return frozenset({label.kind})


def _matches(alert: ScoredAlert, label: Label) -> bool:
    return label.start - EARLY_S <= alert.start <= label.end + LATE_S


def score(
    meters: Sequence[Meter],
    labels: Sequence[Label],
    alerts: Iterable[ScoredAlert],
    coverage: Coverage,
) -> dict[str, Any]:
    """Score alerts against labels: recalls, precision, false alarms, latencies.

    The false-alarm rate is every false alarm (feeder meters' included) per 1,000
    customer meter-days: per customer meter, the data time from its first to its last
    good reading.
    """
    alert_list = list(alerts)
    by_meter: dict[str, list[ScoredAlert]] = {}
    for alert in alert_list:
        by_meter.setdefault(alert.meter, []).append(alert)
    labels_by_meter: dict[str, list[Label]] = {}
    for label in labels:
        labels_by_meter.setdefault(label.meter, []).append(label)
    kinds: dict[str, KindScore] = {}
    per_incident: list[dict[str, Any]] = []
    for label in labels:
        ks = kinds.setdefault(label.kind, KindScore())
        ks.incidents += 1
        found = sorted(
            (a for a in by_meter.get(label.meter, []) if _matches(a, label)),
            key=lambda a: a.start,
        )
        outcome = _incident_outcome(label, found)
        per_incident.append(outcome)
        if not found:
            continue
        ks.detected += 1
        ks.alerts_on_detected += len(found)
        ks.latencies_s.append(outcome["onset_error_s"])
        if outcome["time_to_raise_s"] is not None:
            ks.raise_times_s.append(outcome["time_to_raise_s"])
        accepted = accepted_kinds(label, label.meter in coverage.neutral_measured)
        diagnosing = sum(1 for a in found if a.kind in accepted)
        outcome["diagnosed"] = diagnosing > 0
        if diagnosing:
            ks.diagnosed += 1
            ks.diagnosing_alerts += diagnosing
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
    customers = [m.id for m in meters if m.role == "customer"]
    meter_days = sum(coverage.span_s.get(m, 0.0) for m in customers) / DAY_S
    all_meter_days = sum(coverage.span_s.values()) / DAY_S
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
        "meter_days_counted": (
            f"{len(customers)} customer meters, each from its first to its last good reading "
            "(feeder meters excluded; the false alarms include theirs)"
        ),
        "all_meter_days": all_meter_days,
        "bad_rows": coverage.bad_rows,
        "false_alarms_per_1000_meter_days": (
            None if meter_days <= 0 else 1000.0 * false_alarms / meter_days
        ),
        "per_kind": {kind: kinds[kind].as_dict() for kind in sorted(kinds)},
        "timing": {
            group: _group_timing(kinds, members) for group, members in TIMING_GROUPS.items()
        },
        "per_incident": per_incident,
    }


def _incident_outcome(label: Label, found: Sequence[ScoredAlert]) -> dict[str, Any]:
    """Return one incident's outcome: its label and what its first matching alert did."""
    first = found[0] if found else None
    return {
        "meter": label.meter,
        "kind": label.kind,
        "start": rfc3339(label.start),
        "end": None if math.isinf(label.end) else rfc3339(label.end),
        "magnitude": label.magnitude,
        "detected": first is not None,
        "diagnosed": False,
        "first_alert_kind": None if first is None else first.kind,
        "onset_error_s": None if first is None else first.start - label.start,
        "time_to_raise_s": (
            None if first is None or first.raised is None else first.raised - label.start
        ),
    }


def _group_timing(kinds: dict[str, KindScore], members: Sequence[str]) -> dict[str, Any]:
    """Return the median onset error and time to raise over the incidents of some kinds."""
    onset = [x for k in members if k in kinds for x in kinds[k].latencies_s]
    raise_times = [x for k in members if k in kinds for x in kinds[k].raise_times_s]
    return {
        "kinds": list(members),
        "detected": len(onset),
        "median_onset_error_s": _median(onset),
        "incidents_with_raise_time": len(raise_times),
        "median_time_to_raise_s": _median(raise_times),
    }


def evaluate(data_dir: Path, alerts_path: Path) -> dict[str, Any]:
    """Score an alerts.jsonl against DATA_DIR's labels.csv, meters.csv and readings span."""
    meters = read_meters_csv(data_dir / "meters.csv")
    labels = read_labels(data_dir / "labels.csv")
    alerts = read_alerts(alerts_path)
    readings = locate(data_dir / "readings.csv")  # or readings.csv.gz, as replay reads it
    coverage = read_coverage(readings, meters) if readings.exists() else Coverage()
    return score(meters, labels, alerts, coverage)


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
        f"1,000 customer meter-days ({result['incidents']} incidents, {result['alerts']} "
        f"alerts, {result['meter_days']:.0f} customer meter-days)"
    )


def report(result: dict[str, Any]) -> str:
    """Render the per-kind table and the summary as text."""
    head = (
        f"{'kind':<17}{'incidents':>10}{'detected':>10}{'diagnosed':>10}"
        f"{'det.recall':>11}{'diag.recall':>12}{'onset error':>13}{'time to raise':>15}"
        f"{'alerts':>8}{'false':>7}{'alerts/det.':>12}{'same/diag.':>11}"
    )
    lines = [head, "-" * len(head)]
    for kind, k in result["per_kind"].items():
        lines.append(
            f"{kind:<17}{k['incidents']:>10}{k['detected']:>10}{k['diagnosed']:>10}"
            f"{_fmt(k['detection_recall']):>11}{_fmt(k['diagnosis_recall']):>12}"
            f"{_minutes(k['median_latency_s']):>13}{_minutes(k['median_time_to_raise_s']):>15}"
            f"{k['alerts']:>8}{k['false_alarms']:>7}"
            f"{_fmt(k['alerts_per_detected_incident'], '{:.2f}'):>12}"
            f"{_fmt(k['diagnosing_alerts_per_diagnosed_incident'], '{:.2f}'):>11}"
        )
    lines.append("-" * len(head))
    for group, t in result["timing"].items():
        kinds = t["kinds"]
        name = kinds[0] if len(kinds) == 1 else f"{group} kinds ({', '.join(kinds)})"
        lines.append(
            f"{name}: median onset error "
            f"{_minutes(t['median_onset_error_s'])} over {t['detected']} detected incidents, "
            f"median time to raise {_minutes(t['median_time_to_raise_s'])} over "
            f"{t['incidents_with_raise_time']}"
        )
    lines.append(
        "onset error: start of the first alert on each detected incident - incident start; "
        "time to raise: when that alert was raised - incident start (medians; alerts that "
        "do not say when they were raised are left out of it). "
        "alerts/det.: alerts of any kind matching each detected incident; same/diag.: "
        "alerts of a diagnosing kind per diagnosed incident (1.00: no duplicates). "
        f"Meter-days: {result['meter_days_counted']}; "
        f"{result['bad_rows']} bad rows of readings.csv not counted."
    )
    lines.append(summary_line(result))
    return "\n".join(lines)


def _span(seconds: float | None) -> str:
    """Return a duration in minutes below two hours, else in hours."""
    if seconds is None:
        return "-"
    return f"{seconds / 60:.0f} min" if abs(seconds) < 7200 else f"{seconds / 3600:.1f} h"


def incidents_report(result: dict[str, Any]) -> str:
    """Render one line per incident: when it began (and on which weekday), how it ended."""
    head = (
        f"{'meter':<14}{'kind':<17}{'magnitude':>10}  {'start (UTC)':<25}{'outcome':<11}"
        f"{'first alert':<17}{'onset error':>12}{'time to raise':>15}"
    )
    lines = [head, "-" * len(head)]
    for one in sorted(result["per_incident"], key=lambda o: (o["kind"], o["start"])):
        started = datetime.fromisoformat(one["start"].replace("Z", "+00:00"))
        outcome = "diagnosed" if one["diagnosed"] else "detected" if one["detected"] else "MISSED"
        lines.append(
            f"{one['meter']:<14}{one['kind']:<17}{_fmt(one['magnitude'], '{:g}'):>10}  "
            f"{started.strftime('%a %Y-%m-%d %H:%M'):<25}{outcome:<11}"
            f"{one['first_alert_kind'] or '-':<17}{_span(one['onset_error_s']):>12}"
            f"{_span(one['time_to_raise_s']):>15}"
        )
    return "\n".join(lines)
