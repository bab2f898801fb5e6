"""The engine: runs every detector over each batch and turns conditions into alert events."""

from __future__ import annotations

import importlib
import logging
import math
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

import detectors
from detectors.base import DETECTORS, HOLDS, Conditions, Detector, IncidentFacts
from meterguard.errors import ConfigError
from meterguard.model import (
    QUANTITIES,
    Alert,
    AlertEvent,
    AlertEventType,
    FloatArray,
    MeterRegistry,
    ReadingBatch,
    decode_events,
)

log = logging.getLogger(__name__)

#: A gap between two readings of a meter longer than this earns no kWh-lost credit: the
#: meter was silent and nothing says the condition held meanwhile.
MAX_CREDITED_GAP_S = 900.0
_NOT_DETECTOR_MODULES = {"base", "engine"}


def load_detector_modules() -> None:
    """Import every module of the detectors package so that each registers itself."""
    for info in pkgutil.iter_modules(detectors.__path__):
        if info.name not in _NOT_DETECTOR_MODULES and not info.name.startswith("_"):
            importlib.import_module(f"detectors.{info.name}")


def build_detectors(
    options: Mapping[str, Mapping[str, Any]], registry: MeterRegistry, source: str = "config"
) -> list[Detector]:
    """Build the enabled detectors from their per-name options; bad options are ConfigErrors."""
    load_detector_modules()
    problems: list[tuple[str, str]] = [
        (f"detectors.{name}", f"unknown detector (known: {', '.join(sorted(DETECTORS))})")
        for name in options
        if name not in DETECTORS
    ]
    built: list[Detector] = []
    for name, cls in sorted(DETECTORS.items()):
        try:
            config = cls.config_model.model_validate(dict(options.get(name, {})))
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"])
                problems.append((f"detectors.{name}.{key}", err["msg"]))
            continue
        if config.enabled:
            built.append(cls(config, registry))
    if problems:
        raise ConfigError(source, problems)
    return built


def _snapshot(batch: ReadingBatch, row: int) -> dict[str, Any]:
    """Return one reading as a dict of its measured quantities, for evidence."""
    column = batch.values[:, row]
    out: dict[str, Any] = {"ts": float(batch.ts[row])}
    out.update(
        {
            q: round(float(v), 4)
            for q, v in zip(QUANTITIES, column, strict=True)
            if not math.isnan(v)
        }
    )
    if batch.events[row]:
        out["events"] = decode_events(int(batch.events[row]))
    return out


@dataclass(slots=True)
class _Incident:
    """A condition that holds at one meter: pending until raised, then an open alert."""

    start: float
    last_hold: float
    onset: dict[str, Any]
    phase: int = 0
    raised: bool = False
    alert_id: str = ""
    kwh_lost: float = 0.0
    peak_magnitude: float = 0.0
    confidence: float = 0.0
    last_event_ts: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


class _Lifecycle:
    """Per-detector incident state: persistence before raising, hysteresis before clearing."""

    def __init__(self, detector: Detector, n_meters: int) -> None:
        self.detector = detector
        self.incidents: dict[int, _Incident] = {}
        self.tracked = np.zeros(n_meters, dtype=np.bool_)

    def _alert(self, slot: int, inc: _Incident, end: float | None, latest_ts: float) -> Alert:
        det = self.detector
        facts = IncidentFacts(
            phase=inc.phase,
            duration_s=(end if end is not None else latest_ts) - inc.start,
            peak_magnitude=inc.peak_magnitude,
            kwh_lost=inc.kwh_lost,
        )
        return Alert(
            id=inc.alert_id,
            meter=det.registry.by_slot(slot).id,
            kind=det.kind,
            severity=det.config.severity,
            start=inc.start,
            end=end,
            phase=inc.phase or None,
            confidence=round(inc.confidence, 3),
            estimated_kwh_lost=round(inc.kwh_lost, 4),
            summary=det.summarise(facts),
            evidence={**inc.evidence, "onset": inc.onset, "last_hold_ts": inc.last_hold},
        )

    def advance(
        self, batch: ReadingBatch, cond: Conditions, dt: FloatArray, out: list[AlertEvent]
    ) -> None:
        """Apply one batch of conditions, appending the events it causes to `out`."""
        cfg = self.detector.config
        interesting = np.flatnonzero((cond.holds == HOLDS) | self.tracked[batch.slot])
        for row in interesting.tolist():
            slot = int(batch.slot[row])
            ts = float(batch.ts[row])
            holds = int(cond.holds[row])
            inc = self.incidents.get(slot)
            if holds == HOLDS:
                if inc is None:
                    inc = _Incident(start=ts, last_hold=ts, onset=_snapshot(batch, row))
                    self.incidents[slot] = inc
                    self.tracked[slot] = True
                else:
                    inc.kwh_lost += float(cond.loss_w[row]) * float(dt[row]) / 3.6e6
                inc.last_hold = ts
                inc.phase = inc.phase or int(cond.phase[row])
                inc.peak_magnitude = max(inc.peak_magnitude, float(cond.magnitude[row]))
                inc.confidence = max(inc.confidence, float(cond.score[row]))
                if not inc.raised and ts - inc.start >= cfg.raise_after_s:
                    inc.raised = True
                    meter = self.detector.registry.by_slot(slot).id
                    inc.alert_id = f"{meter}-{self.detector.name}-{int(inc.start)}"
                    inc.evidence["at_raise"] = _snapshot(batch, row)
                    inc.last_event_ts = ts
                    out.append(
                        AlertEvent(
                            type=AlertEventType.OPEN, ts=ts, alert=self._alert(slot, inc, None, ts)
                        )
                    )
                elif inc.raised and ts - inc.last_event_ts >= cfg.update_every_s:
                    inc.last_event_ts = ts
                    inc.evidence["latest"] = _snapshot(batch, row)
                    out.append(
                        AlertEvent(
                            type=AlertEventType.UPDATE,
                            ts=ts,
                            alert=self._alert(slot, inc, None, ts),
                        )
                    )
            elif holds == 0 and inc is not None:
                if not inc.raised:
                    # Not held long enough: a blip, forgotten without a trace.
                    del self.incidents[slot]
                    self.tracked[slot] = False
                elif ts - inc.last_hold >= cfg.clear_after_s:
                    inc.evidence["cleared_by"] = _snapshot(batch, row)
                    out.append(
                        AlertEvent(
                            type=AlertEventType.CLEAR,
                            ts=ts,
                            alert=self._alert(slot, inc, inc.last_hold, ts),
                        )
                    )
                    del self.incidents[slot]
                    self.tracked[slot] = False

    def restore(self, slot: int, alert: Alert) -> None:
        """Take back an alert that was open when the service last stopped."""
        last_hold = float(alert.evidence.get("last_hold_ts", alert.start))
        onset = alert.evidence.get("onset", {})
        inc = _Incident(
            start=alert.start,
            last_hold=last_hold,
            onset=onset,
            phase=alert.phase or 0,
            raised=True,
            alert_id=alert.id,
            kwh_lost=alert.estimated_kwh_lost,
            confidence=alert.confidence,
            last_event_ts=last_hold,
            evidence={
                k: v for k, v in alert.evidence.items() if k not in ("onset", "last_hold_ts")
            },
        )
        self.incidents[slot] = inc
        self.tracked[slot] = True


class Engine:
    """Runs the detectors over batches, live and in replay alike, and emits alert events."""

    def __init__(self, registry: MeterRegistry, detector_list: Iterable[Detector]) -> None:
        self.registry = registry
        self.detectors = list(detector_list)
        self._lifecycles = [_Lifecycle(d, len(registry)) for d in self.detectors]
        self._last_ts = np.full(len(registry), -np.inf)
        self.readings_seen = 0

    def _intervals(self, batch: ReadingBatch) -> FloatArray:
        """Return, per row, the seconds since the same meter's previous reading."""
        order = np.argsort(batch.slot, kind="stable")
        slots = batch.slot[order]
        times = batch.ts[order]
        prev = np.empty_like(times)
        prev[1:] = times[:-1]
        first = np.ones(len(slots), dtype=np.bool_)
        first[1:] = slots[1:] != slots[:-1]
        prev[first] = self._last_ts[slots[first]]
        gaps = times - prev
        gaps[~np.isfinite(gaps) | (gaps < 0) | (gaps > MAX_CREDITED_GAP_S)] = 0.0
        dt = np.empty_like(gaps)
        dt[order] = gaps
        np.maximum.at(self._last_ts, slots, times)
        return dt

    def process(self, batch: ReadingBatch) -> list[AlertEvent]:
        """Run every detector over a batch (rows in time order) and return the events."""
        events: list[AlertEvent] = []
        if len(batch) == 0:
            return events
        dt = self._intervals(batch)
        for life in self._lifecycles:
            life.advance(batch, life.detector.step(batch), dt, events)
        self.readings_seen += len(batch)
        return events

    def restore(self, alerts: Iterable[Alert]) -> int:
        """Take back the active alerts of a previous run; return how many were taken."""
        by_kind = {life.detector.kind: life for life in self._lifecycles}
        taken = 0
        for alert in alerts:
            life = by_kind.get(alert.kind)
            if life is None or alert.meter not in self.registry or alert.end is not None:
                continue
            life.restore(self.registry.slot(alert.meter), alert)
            taken += 1
        return taken

    def active_count(self) -> int:
        """Return how many alerts are open now."""
        return sum(1 for life in self._lifecycles for inc in life.incidents.values() if inc.raised)
