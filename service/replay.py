"""Replay: recorded telemetry files through the live engine, alerts out as JSON lines."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from detectors.engine import Engine, build_detectors
from meterguard.calendar import Calendar, CalendarSettings
from meterguard.meters_csv import read_meters_csv
from meterguard.model import Alert, MeterRegistry, ReadingBatch
from meterguard.timefmt import rfc3339
from meterguard.validation import ReadingValidator, ValidationReport, ValidationSettings
from service.telemetry_csv import DEFAULT_CHUNK_BYTES, ReadingsReader, ReadStats

#: Data time one engine batch spans: live, the engine sees a batch per poll round; replay
#: cuts the file the same way so that silence and windows are judged as promptly.
DEFAULT_BATCH_SPAN_S = 300.0


@dataclass(slots=True)
class ReplayResult:
    """What a replay did."""

    stats: ReadStats
    alerts: int = 0
    still_open: int = 0
    seconds: float = 0.0
    data_start: float | None = None
    data_end: float | None = None
    by_kind: dict[str, int] = field(default_factory=dict)
    #: Values blanked and readings refused by the physical and clock checks.
    validation: ValidationReport = field(default_factory=ValidationReport)
    #: Working days on which the customers rested as on a Sunday (detectors/rest_days.py).
    rested: list[dt.date] = field(default_factory=list)
    #: ... and those judged as days of rest once they were over (rest_days_from_data).
    rested_taken: list[dt.date] = field(default_factory=list)


def split_by_time(batch: ReadingBatch, span_s: float) -> Iterator[ReadingBatch]:
    """Cut a batch into consecutive pieces of at most `span_s` of data time each."""
    if len(batch) == 0:
        return
    bucket = np.floor(batch.ts / span_s)
    cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
    if cuts.size == 0:
        yield batch
        return
    bounds = [0, *cuts.tolist(), len(batch)]
    for a, b in itertools.pairwise(bounds):
        # Slices, made contiguous once for the compiled passes; no Python work per row.
        yield ReadingBatch(
            ts=batch.ts[a:b],
            slot=batch.slot[a:b],
            values=np.ascontiguousarray(batch.values[:, a:b]),
            events=batch.events[a:b],
            unknown_events={r - a: c for r, c in batch.unknown_events.items() if a <= r < b},
        )


def alert_record(alert: Alert) -> dict[str, Any]:
    """Return an alert as replay writes it: the Alert fields, times in RFC 3339 UTC."""
    record = alert.model_dump(mode="json")
    record["start"] = rfc3339(alert.start)
    record["raised"] = None if alert.raised is None else rfc3339(alert.raised)
    record["end"] = None if alert.end is None else rfc3339(alert.end)
    return record


def replay(
    data_dir: Path,
    out: TextIO,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    span_s: float = DEFAULT_BATCH_SPAN_S,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Callable[[int, int], None] | None = None,
    calendar: CalendarSettings | None = None,
    validation: ValidationSettings | None = None,
) -> ReplayResult:
    """Run DATA_DIR/readings.csv through the engine and write every alert to `out`.

    `progress(bytes_done, bytes_total)` is called after each chunk of the file.
    """
    started = time.perf_counter()
    registry = MeterRegistry(read_meters_csv(data_dir / "meters.csv"))
    engine = Engine(
        registry,
        build_detectors(options or {}, registry, "detector options"),
        Calendar(calendar),
    )
    reader = ReadingsReader(data_dir / "readings.csv", registry, chunk_bytes)
    validator = ReadingValidator(registry, validation)
    engine.clock_report = validator.report
    result_validation = validator.report
    alerts: dict[str, Alert] = {}
    result = ReplayResult(stats=reader.stats, validation=result_validation)
    for chunk in reader:
        if result.data_start is None:
            result.data_start = float(chunk.ts.min())
        result.data_end = max(result.data_end or -np.inf, float(chunk.ts.max()))
        for batch in split_by_time(validator.check(chunk), span_s):
            for event in engine.process(batch):
                alerts[event.alert.id] = event.alert
        if progress is not None:
            progress(reader.bytes_done, reader.bytes_total)
    for alert in engine.open_alerts():
        alerts[alert.id] = alert  # the latest figures of alerts still open at the end
    for alert in sorted(alerts.values(), key=lambda a: (a.start, a.meter, a.kind.value)):
        out.write(json.dumps(alert_record(alert), separators=(",", ":")) + "\n")
        result.by_kind[alert.kind.value] = result.by_kind.get(alert.kind.value, 0) + 1
        result.still_open += alert.end is None
    result.alerts = len(alerts)
    result.rested = engine.rest_days.unlisted()
    result.rested_taken = list(engine.calendar.found)
    result.seconds = time.perf_counter() - started
    return result
