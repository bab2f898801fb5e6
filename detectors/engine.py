"""The engine: runs every detector over each batch and turns conditions into alert events."""

from __future__ import annotations

import importlib
import itertools
import logging
import math
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

import detectors
from detectors.base import CLEAR, DETECTORS, HOLDS, Conditions, Detector, IncidentFacts
from detectors.context import BatchContext, FleetArrays
from meterguard.errors import ConfigError
from meterguard.model import (
    QUANTITIES,
    Alert,
    AlertEvent,
    AlertEventType,
    FloatArray,
    IntArray,
    MeterRegistry,
    ReadingBatch,
    Severity,
    decode_events,
)

log = logging.getLogger(__name__)

#: A gap between two readings of a meter longer than this earns no kWh-lost credit: the
#: meter was silent and nothing says the condition held meanwhile.
MAX_CREDITED_GAP_S = 900.0
_NOT_DETECTOR_MODULES = {"base", "engine", "context"}

Snapshot = Callable[[int], dict[str, Any]]
#: What an incident keeps of its onset until it raises: a dict, or (batch, row) not yet
#: turned into one (most pending incidents are blips that never need it).
Onset = dict[str, Any] | tuple[ReadingBatch, int]


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
    warn_unknown_classes(built, registry)
    return built


def warn_unknown_classes(built: Iterable[Detector], registry: MeterRegistry) -> list[str]:
    """Log (and return) per-class options naming a class no meter of the registry has.

    Classes match case-insensitively; a misspelt class would otherwise be ignored silently.
    """
    known = {(m.customer_class or "").casefold() for m in registry}
    unknown = [
        f"detectors.{det.name}.classes.{name}"
        for det in built
        for name in det.config.classes
        if name.casefold() not in known
    ]
    for option in unknown:
        log.warning("%s: no meter of the registry has this customer class", option)
    return unknown


def _snapshot(batch: ReadingBatch, row: int) -> dict[str, Any]:
    """Return one reading as a dict of its measured quantities, for evidence."""
    column = np.round(batch.values[:, row], 4).tolist()
    out: dict[str, Any] = {"ts": float(batch.ts[row])}
    out.update({q: v for q, v in zip(QUANTITIES, column, strict=True) if v == v})  # NaN != NaN
    if batch.events[row]:
        out["events"] = decode_events(int(batch.events[row]))
    return out


def _onset_dict(inc: _Incident) -> dict[str, Any]:
    """Return an incident's onset reading as evidence, building it on first use."""
    if isinstance(inc.onset, tuple):
        batch, row = inc.onset
        inc.onset = _snapshot(batch, row)
    return inc.onset


@dataclass(slots=True)
class _Incident:
    """A condition that holds at one meter: pending until raised, then an open alert."""

    start: float
    last_hold: float
    onset: Onset
    phase: int = 0
    raised: bool = False
    alert_id: str = ""
    kwh_lost: float = 0.0
    peak_magnitude: float = 0.0
    confidence: float = 0.0
    last_event_ts: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Rows:
    """The rows one lifecycle step looks at: times, slots, verdicts, credit and evidence."""

    ts: FloatArray
    slot: IntArray
    cond: Conditions
    dt: FloatArray
    snapshot: Snapshot
    #: The batch the rows come from (None for verdicts reached without a reading).
    batch: ReadingBatch | None = None


def _describer(detector: Detector, slots: IntArray, now: float) -> Snapshot:
    """Return the evidence maker of verdicts reached without a reading."""

    def describe(i: int) -> dict[str, Any]:
        return {"ts": now, **detector.evidence(int(slots[i]))}

    return describe


class _Lifecycle:
    """Per-detector incident state: persistence before raising, hysteresis before clearing."""

    def __init__(self, detector: Detector, registry: MeterRegistry) -> None:
        self.detector = detector
        self.incidents: dict[int, _Incident] = {}
        #: Per slot, the data time before which a new incident may not start: an operator
        #: cleared the last one by hand, and a detector whose onset lies in the past
        #: (comms_loss, consumption_drop) would otherwise reopen the same alert id.
        self.not_before: dict[int, float] = {}
        self.tracked = np.zeros(len(registry), dtype=np.bool_)
        cfg = detector.config
        self.raise_after = np.full(len(registry), cfg.raise_after_s)
        self.clear_after = np.full(len(registry), cfg.clear_after_s)
        by_class = {name.casefold(): timing for name, timing in cfg.classes.items()}
        for slot, meter in enumerate(registry):
            timing = by_class.get((meter.customer_class or "").casefold())
            if timing is not None and timing.raise_after_s is not None:
                self.raise_after[slot] = timing.raise_after_s
            if timing is not None and timing.clear_after_s is not None:
                self.clear_after[slot] = timing.clear_after_s

    def _alert(self, slot: int, inc: _Incident, end: float | None, latest_ts: float) -> Alert:
        det = self.detector
        facts = IncidentFacts(
            phase=inc.phase,
            duration_s=(end if end is not None else latest_ts) - inc.start,
            peak_magnitude=inc.peak_magnitude,
            kwh_lost=inc.kwh_lost,
        )
        severity = det.config.severity
        if inc.kwh_lost >= det.config.critical_kwh:
            severity = Severity.CRITICAL
        return Alert(
            id=inc.alert_id,
            meter=det.registry.by_slot(slot).id,
            kind=det.kind,
            severity=severity,
            start=inc.start,
            end=end,
            phase=inc.phase or None,
            confidence=round(min(max(inc.confidence, 0.0), 1.0), 3),
            estimated_kwh_lost=round(inc.kwh_lost, 4),
            summary=det.summarise(facts),
            evidence={
                **inc.evidence,
                "onset": _onset_dict(inc),
                "last_hold_ts": inc.last_hold,
                "peak_magnitude": inc.peak_magnitude,
            },
        )

    def _event(self, kind: AlertEventType, ts: float, slot: int, inc: _Incident) -> AlertEvent:
        end = inc.last_hold if kind is AlertEventType.CLEAR else None
        return AlertEvent(type=kind, ts=ts, alert=self._alert(slot, inc, end, ts))

    def advance(self, rows: _Rows, out: list[AlertEvent]) -> None:
        """Apply one set of verdicts, appending the events they cause to `out`."""
        holds = rows.cond.holds
        look = np.flatnonzero((holds == HOLDS) | ((holds == CLEAR) & self.tracked[rows.slot]))
        if look.size == 0:
            return
        order = look[np.lexsort((rows.ts[look], rows.slot[look]))].astype(np.int64)
        slots = rows.slot[order]
        starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
        ends = np.r_[starts[1:], order.size]
        cond = rows.cond
        # Per meter, the figures of an open alert that held on every row, all at once: the
        # common case costs a few attribute updates per meter, not a walk over its rows.
        all_held = np.minimum.reduceat(cond.holds[order], starts) == HOLDS
        credit = np.add.reduceat(cond.loss_w[order] * rows.dt[order], starts) / 3.6e6
        peak = np.maximum.reduceat(cond.magnitude[order], starts)
        score = np.maximum.reduceat(cond.score[order], starts)
        last_row = order[ends - 1]
        last_ts = rows.ts[last_row]
        update_every = self.detector.config.update_every_s
        may_restart = cond.restart is not None
        for g, slot in enumerate(slots[starts].tolist()):
            inc = self.incidents.get(slot)
            if inc is None or not inc.raised or not all_held[g] or may_restart:
                self._advance_slot(slot, order[starts[g] : ends[g]], rows, out)
                continue
            inc.kwh_lost += float(credit[g])
            inc.last_hold = max(inc.last_hold, float(last_ts[g]))
            inc.peak_magnitude = max(inc.peak_magnitude, float(peak[g]))
            inc.confidence = max(inc.confidence, float(score[g]))
            if inc.last_hold - inc.last_event_ts >= update_every:
                inc.last_event_ts = inc.last_hold
                inc.evidence["latest"] = rows.snapshot(int(last_row[g]))
                out.append(self._event(AlertEventType.UPDATE, inc.last_hold, slot, inc))

    def _advance_slot(
        self, slot: int, index: npt.NDArray[np.int64], rows: _Rows, out: list[AlertEvent]
    ) -> None:
        """Walk one meter's rows run by run (a run: consecutive rows with one verdict)."""
        cond = rows.cond
        ts = rows.ts[index]
        held = cond.holds[index] == HOLDS
        raise_after = float(self.raise_after[slot])
        clear_after = float(self.clear_after[slot])
        # Persistence is continuous in data time: a pending incident whose holds are this
        # far apart (silence or unknown verdicts between them) starts again.
        max_gap = max(clear_after, MAX_CREDITED_GAP_S)
        gapped = held[1:] & held[:-1] & (np.diff(ts) > max_gap)
        cuts = np.flatnonzero((held[1:] != held[:-1]) | gapped) + 1
        bounds = [0, *cuts.tolist(), len(index)]
        cfg = self.detector.config
        for a, b in itertools.pairwise(bounds):
            run = index[a:b]
            inc = self.incidents.get(slot)
            if not held[a]:
                if inc is None:
                    continue
                if not inc.raised:
                    # Not held long enough: a blip, forgotten without a trace.
                    del self.incidents[slot]
                    self.tracked[slot] = False
                    continue
                waited = ts[a:b] - inc.last_hold
                past = np.flatnonzero(waited >= clear_after)
                if past.size:
                    row = int(run[past[0]])
                    inc.evidence["cleared_by"] = rows.snapshot(row)
                    out.append(self._event(AlertEventType.CLEAR, float(ts[a + past[0]]), slot, inc))
                    del self.incidents[slot]
                    self.tracked[slot] = False
                continue
            if cond.restart is not None and inc is not None and cond.restart[run[0]]:
                if inc.raised:
                    inc.evidence["cleared_by"] = {"restart": rows.snapshot(int(run[0]))}
                    out.append(self._event(AlertEventType.CLEAR, float(ts[a]), slot, inc))
                del self.incidents[slot]
                inc = None
            if inc is not None and not inc.raised and ts[a] - inc.last_hold > max_gap:
                del self.incidents[slot]  # the condition was not seen to hold meanwhile
                inc = None
            credit = cond.loss_w[run] * rows.dt[run] / 3.6e6
            if inc is None:
                first = int(run[0])
                onset_ts = float(ts[a])
                if cond.onset is not None and not math.isnan(cond.onset[first]):
                    onset_ts = min(onset_ts, float(cond.onset[first]))
                if slot in self.not_before:
                    onset_ts = max(onset_ts, self.not_before.pop(slot))
                onset: Onset = (
                    (rows.batch, first) if rows.batch is not None else rows.snapshot(first)
                )
                inc = _Incident(start=onset_ts, last_hold=onset_ts, onset=onset)
                self.incidents[slot] = inc
                self.tracked[slot] = True
                credit[0] = 0.0  # the onset reading starts the clock; it earns nothing yet
            cumulative = np.cumsum(credit)
            base_kwh = inc.kwh_lost
            inc.last_hold = max(inc.last_hold, float(ts[b - 1]))
            if not inc.phase:
                phases = cond.phase[run]
                nonzero = phases[phases != 0]
                inc.phase = int(nonzero[0]) if nonzero.size else 0
            inc.peak_magnitude = max(inc.peak_magnitude, float(cond.magnitude[run].max()))
            inc.confidence = max(inc.confidence, float(cond.score[run].max()))
            if not inc.raised:
                due = np.flatnonzero(ts[a:b] - inc.start >= raise_after)
                if due.size:
                    k = int(due[0])
                    inc.raised = True
                    inc.onset = _onset_dict(inc)
                    meter = self.detector.registry.by_slot(slot).id
                    inc.alert_id = f"{meter}-{self.detector.name}-{int(inc.start)}"
                    inc.evidence["at_raise"] = rows.snapshot(int(run[k]))
                    inc.evidence.update(self.detector.evidence(slot))
                    inc.kwh_lost = base_kwh + float(cumulative[k])
                    inc.last_event_ts = float(ts[a + k])
                    hold_then, inc.last_hold = inc.last_hold, float(ts[a + k])
                    out.append(self._event(AlertEventType.OPEN, float(ts[a + k]), slot, inc))
                    inc.last_hold = hold_then
            inc.kwh_lost = base_kwh + float(cumulative[-1])
            last_ts = float(ts[b - 1])
            if inc.raised and last_ts - inc.last_event_ts >= cfg.update_every_s:
                inc.last_event_ts = last_ts
                inc.evidence["latest"] = rows.snapshot(int(run[-1]))
                out.append(self._event(AlertEventType.UPDATE, last_ts, slot, inc))

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
            peak_magnitude=float(alert.evidence.get("peak_magnitude", 0.0)),
            confidence=alert.confidence,
            last_event_ts=last_hold,
            evidence={
                k: v
                for k, v in alert.evidence.items()
                if k not in ("onset", "last_hold_ts", "peak_magnitude")
            },
        )
        self.incidents[slot] = inc
        self.tracked[slot] = True

    def open_alerts(self, latest_ts: float) -> list[Alert]:
        """Return the alerts open now, as they stand."""
        return [
            self._alert(slot, inc, None, latest_ts)
            for slot, inc in sorted(self.incidents.items())
            if inc.raised
        ]


class Engine:
    """Runs the detectors over batches, live and in replay alike, and emits alert events."""

    def __init__(self, registry: MeterRegistry, detector_list: Iterable[Detector]) -> None:
        self.registry = registry
        self.fleet = FleetArrays.from_registry(registry)
        self.detectors = list(detector_list)
        self._lifecycles = [_Lifecycle(d, registry) for d in self.detectors]
        self._last_ts = np.full(len(registry), -np.inf)
        self.now = -math.inf
        self.readings_seen = 0
        #: Rows dropped: not a finite time, or older than their meter's latest reading (a
        #: late row would move windows and incidents backwards).
        self.rows_dropped = 0

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
        starts = np.flatnonzero(first)
        latest = np.maximum.reduceat(times, starts)
        group_slots = slots[starts]
        self._last_ts[group_slots] = np.maximum(self._last_ts[group_slots], latest)
        return dt

    def process(self, batch: ReadingBatch) -> list[AlertEvent]:
        """Run every detector over a batch (rows in time order) and return the events.

        Rows without a finite time, and rows older than their meter's latest reading (late
        rows), are dropped and counted in `rows_dropped` before any detector sees them, so
        no window (energy_balance, consumption_drop) or incident moves backwards. Rows far
        ahead of the data time are not judged here: the readings reader rejects them.
        """
        events: list[AlertEvent] = []
        usable = np.isfinite(batch.ts) & (batch.ts >= self._last_ts[batch.slot])
        if not usable.all():
            self.rows_dropped += int((~usable).sum())
            batch = batch.take(np.flatnonzero(usable))
        if len(batch) == 0:
            return events
        dt = self._intervals(batch)
        self.now = max(self.now, float(batch.ts.max()))
        ctx = BatchContext(
            batch=batch, fleet=self.fleet, dt=dt, now=self.now, last_seen=self._last_ts
        )

        def snapshot(row: int) -> dict[str, Any]:
            return _snapshot(batch, row)

        for life in self._lifecycles:
            cond = life.detector.step(batch, ctx)
            life.advance(_Rows(batch.ts, batch.slot, cond, dt, snapshot, batch), events)
            polled = life.detector.poll(ctx)
            if polled is not None and len(polled.slot):
                times = np.full(len(polled.slot), self.now)
                described = _describer(life.detector, polled.slot, self.now)
                rows = _Rows(times, polled.slot, polled.conditions, polled.dt, described)
                life.advance(rows, events)
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

    def forget(self, alert: Alert) -> bool:
        """Drop the incident of an alert cleared by hand; return whether it was open here.

        If the condition still holds, the next holding reading starts a new incident,
        raised as a new alert once it has persisted again.
        """
        if alert.meter not in self.registry:
            return False
        slot = self.registry.slot(alert.meter)
        for life in self._lifecycles:
            inc = life.incidents.get(slot)
            if life.detector.kind is alert.kind and inc is not None and inc.alert_id == alert.id:
                del life.incidents[slot]
                life.tracked[slot] = False
                # A new incident starts after the clear, in a later second than this one,
                # so it gets an alert id of its own.
                life.not_before[slot] = max(self.now, math.floor(alert.start) + 1.0)
                return True
        return False

    def active_count(self) -> int:
        """Return how many alerts are open now."""
        return sum(1 for life in self._lifecycles for inc in life.incidents.values() if inc.raised)

    def open_alerts(self) -> list[Alert]:
        """Return every alert open now (replay writes these with end null at the end)."""
        return [a for life in self._lifecycles for a in life.open_alerts(self.now)]
