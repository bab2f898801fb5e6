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
from detectors.base import (
    DETECTORS,
    HOLDS,
    SEVERITY_LEVELS,
    Conditions,
    Detector,
    IncidentFacts,
)
from detectors.compiled import (
    by_meter_compiled,
    gaps_compiled,
    mark_seen_compiled,
    quiet_compiled,
    scan_compiled,
    triage_compiled,
)
from detectors.context import BatchContext, FleetArrays, OpenAlerts
from detectors.ledger import HourlyLedger
from detectors.rest_days import RestDayWatch
from meterguard.calendar import Calendar
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
from meterguard.validation import ValidationReport

log = logging.getLogger(__name__)

#: A meter silent this long (data time) at least, or `SILENCE_INTERVALS` of its own usual
#: interval if longer, was silent: the reading after it earns no kWh-lost credit, and a
#: pending incident is not taken to have held meanwhile.
MIN_SILENCE_S = 900.0
SILENCE_INTERVALS = 3.0
#: A gap longer than this is always a silence, never a meter's interval (the longest
#: interval the detectors are built for is an hour).
MAX_INTERVAL_S = 7200.0
#: Detectors poll for verdicts reached without a reading (silence, closed windows) each time
#: data time passes a multiple of this; batches are cut there, so the same readings give
#: the same verdicts at the same data times whatever the batches they came in.
TICK_S = 300.0
#: A reading more than this ahead of the fleet's data time (the latest time seen, or where
#: 90 % of the batch lies if later) is refused: one device's wrong clock must not move the
#: data time of every other meter.
MAX_AHEAD_S = 3600.0
#: Weight of a new interval in a meter's usual interval (on a log scale, one step at most
#: doubling or halving it, so one long silence does not pass for a new cadence).
_INTERVAL_RATE = 0.2
#: The interval limits as the compiled gaps pass takes them.
_INTERVAL_LIMITS = np.array([MAX_INTERVAL_S, MIN_SILENCE_S, SILENCE_INTERVALS])
#: Modules of the detectors package that hold the detectors' infrastructure, not a detector;
#: every other module must register at least one (tests/detectors/test_loader.py).
INFRASTRUCTURE_MODULES = frozenset(
    {
        "base",
        "engine",
        "context",
        "ledger",
        "balance",
        "cable",
        "cable_evidence",
        "compiled",
        "supply_reference",
        "rest_days",
    }
)

Snapshot = Callable[[int], dict[str, Any]]
#: What an incident keeps of its onset until it raises: a dict, or (batch, row) not yet
#: turned into one (most pending incidents are blips that never need it).
Onset = dict[str, Any] | tuple[ReadingBatch, int]
#: An incident's figures the compiled pass keeps per slot (rows 1.. of `Lifecycle.state`).
_FIGURES = ("kwh_lost", "held_s", "last_hold", "peak_magnitude", "confidence", "last_event_ts")
_LAST_EVENT_ROW = _FIGURES.index("last_event_ts") + 1
_HOLDS_CODE = int(HOLDS)


def load_detector_modules() -> list[str]:
    """Import every detector module of the package so that each registers itself; name them."""
    loaded = []
    for info in pkgutil.iter_modules(detectors.__path__):
        if info.name not in INFRASTRUCTURE_MODULES and not info.name.startswith("_"):
            loaded.append(importlib.import_module(f"detectors.{info.name}").__name__)
    return loaded


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
    column = batch.values[:, row].round(4).tolist()
    out: dict[str, Any] = {"ts": float(batch.ts[row])}
    out.update({q: v for q, v in zip(QUANTITIES, column, strict=True) if v == v})  # NaN != NaN
    if batch.events[row]:
        out["events"] = decode_events(int(batch.events[row]))
    return out


def _np_maximum(a: float, b: float) -> float:
    """Return np.maximum(a, b) of two floats: NaN if either is."""
    if a != a or b != b:  # NaN != NaN
        return math.nan
    return a if a >= b else b


def _np_max(values: list[float]) -> float:
    """Return np.max of a non-empty list of floats: NaN if any is."""
    top = values[0]
    for v in values[1:]:
        top = _np_maximum(top, v)
    return top


def _finite(value: float) -> float:
    """Return an alert figure fit to show: never inf or NaN (0 when it cannot be told)."""
    return value if math.isfinite(value) else 0.0


def _slice(batch: ReadingBatch, a: int, b: int) -> ReadingBatch:
    """Return rows a..b of a batch as contiguous arrays (the compiled passes want them)."""
    return ReadingBatch(
        ts=batch.ts[a:b],
        slot=batch.slot[a:b],
        values=np.ascontiguousarray(batch.values[:, a:b]),
        events=batch.events[a:b],
        unknown_events={r - a: c for r, c in batch.unknown_events.items() if a <= r < b},
    )


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
    #: Data time of the verdict that raised it.
    raised_at: float | None = None
    #: Data time since `start` in which the condition held, and in which it was absent.
    held_s: float = 0.0
    absent_s: float = 0.0
    alert_id: str = ""
    #: The highest severity code its verdicts asked for (0: the detector's own).
    severity_code: int = 0
    kwh_lost: float = 0.0
    peak_magnitude: float = 0.0
    confidence: float = 0.0
    last_event_ts: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: one is made per detector and batch, and frozen costs
class Rows:
    """The rows one lifecycle step looks at: times, slots, verdicts, credit and evidence."""

    ts: FloatArray
    slot: IntArray
    cond: Conditions
    #: Data time each verdict covers, s: a reading's interval, a window's length.
    dt: FloatArray
    snapshot: Snapshot
    #: The batch the rows come from (None for verdicts reached without a reading).
    batch: ReadingBatch | None = None


def _describer(detector: Detector, slots: IntArray, times: FloatArray) -> Snapshot:
    """Return the evidence maker of verdicts reached without a reading."""

    def describe(i: int) -> dict[str, Any]:
        return {"ts": float(times[i]), **detector.evidence(int(slots[i]))}

    return describe


class Lifecycle:
    """Per-detector incident state: persistence before raising, hysteresis before clearing.

    Everything is judged in data time, never in readings: a reading's verdict stands for
    the interval since the meter's previous reading, a window's for the window.
    """

    def __init__(self, detector: Detector, registry: MeterRegistry, silence_s: FloatArray) -> None:
        self.detector = detector
        self.incidents: dict[int, _Incident] = {}
        #: Per slot, the data time before which a new incident may not start: an operator
        #: cleared the last one by hand, and a detector whose onset lies in the past
        #: (comms_loss, consumption_drop) would otherwise reopen the same alert id.
        self.not_before: dict[int, float] = {}
        #: Per slot, the figures the compiled pass updates in place (rows: `_FIGURES`); they
        #: hold an incident's own while it exists, taken into it when Python code reads it.
        self.state = np.zeros((len(_FIGURES) + 1, len(registry)))
        self.clears_at[:] = np.inf
        #: Per slot, whether an incident open as an alert exists.
        self.raised = np.zeros(len(registry), dtype=np.bool_)
        #: The engine's per-slot silence limit (shared, kept up to date by the engine).
        self.silence_s = silence_s
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

    @property
    def clears_at(self) -> FloatArray:
        """Per slot, from which data time a clear verdict could end its open alert.

        inf: none open; a clear verdict before then changes nothing and is not looked at.
        A view of `state`'s first row, made on each use: an attribute holding the view
        would become an array of its own in a snapshot (pickle copies views).
        """
        row: FloatArray = self.state[0]
        return row

    def _alert(self, slot: int, inc: _Incident, end: float | None, latest_ts: float) -> Alert:
        det = self.detector
        facts = IncidentFacts(
            phase=inc.phase,
            duration_s=(end if end is not None else latest_ts) - inc.start,
            peak_magnitude=_finite(inc.peak_magnitude),
            kwh_lost=_finite(inc.kwh_lost),
        )
        severity = SEVERITY_LEVELS[inc.severity_code] or det.config.severity
        if inc.kwh_lost >= det.config.critical_kwh:
            severity = Severity.CRITICAL
        return Alert(
            id=inc.alert_id,
            meter=det.registry.by_slot(slot).id,
            kind=det.kind,
            severity=severity,
            start=inc.start,
            raised=inc.raised_at,
            end=end,
            phase=inc.phase or None,
            confidence=round(min(max(_finite(inc.confidence), 0.0), 1.0), 3),
            estimated_kwh_lost=round(_finite(inc.kwh_lost), 4),
            summary=det.summarise(facts),
            summary_message=det.summary_message(facts),
            evidence={
                **inc.evidence,
                "onset": _onset_dict(inc),
                "last_hold_ts": inc.last_hold,
                "peak_magnitude": _finite(inc.peak_magnitude),
            },
        )

    def _event(self, kind: AlertEventType, ts: float, slot: int, inc: _Incident) -> AlertEvent:
        end = inc.last_hold if kind is AlertEventType.CLEAR else None
        return AlertEvent(type=kind, ts=ts, alert=self._alert(slot, inc, end, ts))

    def _drop(self, slot: int) -> None:
        del self.incidents[slot]
        self.clears_at[slot] = np.inf
        self.raised[slot] = False

    def _pull(self, slot: int) -> _Incident:
        """Return a meter's incident with the figures the compiled pass keeps taken in."""
        inc = self.incidents[slot]
        for name, value in zip(_FIGURES, self.state[1:, slot].tolist(), strict=True):
            setattr(inc, name, value)
        return inc

    def _sync(self, slot: int) -> None:
        """Keep the per-slot arrays the compiled pass reads in step with the incident."""
        inc = self.incidents.get(slot)
        pending = inc is not None and not inc.raised
        self.raised[slot] = inc is not None and inc.raised
        if inc is not None:
            self.state[1:, slot] = [getattr(inc, name) for name in _FIGURES]
        self.clears_at[slot] = (
            -np.inf
            if pending
            else np.inf
            if inc is None
            else inc.last_hold + float(self.clear_after[slot])
        )

    def advance(self, rows: Rows, out: list[AlertEvent]) -> None:
        """Apply one set of verdicts, appending the events they cause to `out`."""
        holds = rows.cond.holds
        if quiet_compiled(holds, rows.ts, rows.slot, self.clears_at):
            return  # the common case: nothing holds, no clear verdict can end anything
        cond = rows.cond
        # A clear verdict matters to a pending incident, or once the hysteresis has passed.
        # Per meter, the figures of an open alert that held on every row are updated in
        # the compiled pass: the common case costs no Python per meter. Verdicts that may
        # restart an incident or change its severity take the long path.
        order, lows, highs, update_only = triage_compiled(
            holds,
            rows.ts,
            rows.slot,
            cond.loss_w,
            rows.dt,
            cond.magnitude,
            cond.score,
            self.state,
            self.raised,
            self.clear_after,
            self.detector.config.update_every_s,
            cond.restart is None and cond.severity is None,
        )
        for lo, hi, update in zip(lows.tolist(), highs.tolist(), update_only.tolist(), strict=True):
            slot = int(rows.slot[order[lo]])
            if not update:
                self._advance_slot(slot, order[lo:hi], rows, out)
                self._sync(slot)
                continue
            inc = self._pull(slot)
            inc.last_event_ts = inc.last_hold
            self.state[_LAST_EVENT_ROW, slot] = inc.last_hold
            inc.evidence["latest"] = rows.snapshot(int(order[hi - 1]))
            out.append(self._event(AlertEventType.UPDATE, inc.last_hold, slot, inc))

    def _tolerance(self, slot: int, dt: float) -> float:
        """Return how long a condition may go unseen and still be the same incident."""
        return max(float(self.clear_after[slot]), float(self.silence_s[slot]), 2.0 * dt)

    def _advance_slot(
        self, slot: int, index: npt.NDArray[np.int64], rows: Rows, out: list[AlertEvent]
    ) -> None:
        """Walk one meter's rows run by run (a run: consecutive rows with one verdict).

        A meter has a row or a few here: they are walked as Python floats, in numpy's
        order of operations (running sums as np.cumsum's, maxima as np.max's).
        """
        if slot in self.incidents:
            self._pull(slot)
        cond = rows.cond
        idx: list[int] = index.tolist()
        ts: list[float] = rows.ts[index].tolist()
        dt: list[float] = rows.dt[index].tolist()
        held = [h == _HOLDS_CODE for h in cond.holds[index].tolist()]
        raise_after = float(self.raise_after[slot])
        clear_after = float(self.clear_after[slot])
        cfg = self.detector.config
        fraction = cfg.persist_fraction
        tolerance = self._tolerance(slot, _np_max(dt))
        # Holds this far apart (silence or unknown verdicts between them) are not one run.
        cuts = [
            i
            for i in range(1, len(idx))
            if held[i] != held[i - 1] or (held[i] and held[i - 1] and ts[i] - ts[i - 1] > tolerance)
        ]
        for a, b in itertools.pairwise([0, *cuts, len(idx)]):
            run = idx[a:b]
            inc = self.incidents.get(slot)
            if not held[a]:
                if inc is None:
                    continue
                if not inc.raised:
                    # A pending incident survives a blip: it is given up once the condition
                    # was absent for more than its share of the window, or unseen too long.
                    absent = [inc.absent_s + c for c in itertools.accumulate(dt[a:b])]
                    gone = any(
                        gap > (1.0 - fraction) * _np_maximum(raise_after, t - inc.start)
                        or t - inc.last_hold > tolerance
                        for gap, t in zip(absent, ts[a:b], strict=True)
                    )
                    if gone:
                        self._drop(slot)
                    else:
                        inc.absent_s = absent[-1]
                    continue
                past = [i for i in range(a, b) if ts[i] - inc.last_hold >= clear_after]
                if past:
                    inc.evidence["cleared_by"] = rows.snapshot(idx[past[0]])
                    out.append(self._event(AlertEventType.CLEAR, ts[past[0]], slot, inc))
                    self._drop(slot)
                continue
            if cond.restart is not None and inc is not None and cond.restart[run[0]]:
                if inc.raised:
                    inc.evidence["cleared_by"] = {"restart": rows.snapshot(run[0])}
                    out.append(self._event(AlertEventType.CLEAR, ts[a], slot, inc))
                self._drop(slot)
                inc = None
            if inc is not None and not inc.raised and ts[a] - inc.last_hold > tolerance:
                self._drop(slot)  # the condition was not seen to hold meanwhile
                inc = None
            loss_w: list[float] = cond.loss_w[run].tolist()
            covered = dt[a:b]
            credit = [w * d / 3.6e6 for w, d in zip(loss_w, covered, strict=True)]
            if inc is None:
                first = run[0]
                onset_ts = ts[a]
                if cond.onset is not None and not math.isnan(cond.onset[first]):
                    onset_ts = min(onset_ts, float(cond.onset[first]))
                if slot in self.not_before:
                    onset_ts = max(onset_ts, self.not_before.pop(slot))
                onset: Onset = (
                    (rows.batch, first) if rows.batch is not None else rows.snapshot(first)
                )
                inc = _Incident(start=onset_ts, last_hold=onset_ts, onset=onset)
                self.incidents[slot] = inc
                # The incident's window opens at its start: a reading's interval before it
                # earns nothing, a window verdict's own span does.
                covered[0] = min(covered[0], ts[a] - onset_ts)
                credit[0] = loss_w[0] * covered[0] / 3.6e6
            cumulative = list(itertools.accumulate(credit))
            held_s = [inc.held_s + c for c in itertools.accumulate(covered)]
            base_kwh = inc.kwh_lost
            inc.last_hold = max(inc.last_hold, ts[b - 1])
            if not inc.phase:
                inc.phase = next((p for p in cond.phase[run].tolist() if p != 0), 0)
            inc.peak_magnitude = max(inc.peak_magnitude, _np_max(cond.magnitude[run].tolist()))
            inc.confidence = max(inc.confidence, _np_max(cond.score[run].tolist()))
            if cond.severity is not None:
                inc.severity_code = max(inc.severity_code, int(cond.severity[run].max()))
            if not inc.raised:
                # Raised once the window has passed with the condition held for most of it;
                # never on the reading it began with (no alert is 0 s long).
                due = [
                    k
                    for k in range(b - a)
                    if ts[a + k] - inc.start >= raise_after
                    and ts[a + k] - inc.start > 0
                    and held_s[k] >= fraction * (held_s[k] + inc.absent_s)
                ]
                if due:
                    k = due[0]
                    inc.raised = True
                    inc.raised_at = ts[a + k]
                    inc.onset = _onset_dict(inc)
                    meter = self.detector.registry.by_slot(slot).id
                    inc.alert_id = f"{meter}-{self.detector.name}-{int(inc.start)}"
                    inc.evidence["at_raise"] = rows.snapshot(run[k])
                    inc.evidence.update(self.detector.evidence(slot))
                    inc.kwh_lost = base_kwh + cumulative[k]
                    inc.last_event_ts = ts[a + k]
                    hold_then, inc.last_hold = inc.last_hold, ts[a + k]
                    out.append(self._event(AlertEventType.OPEN, ts[a + k], slot, inc))
                    inc.last_hold = hold_then
            inc.kwh_lost = base_kwh + cumulative[-1]
            inc.held_s = held_s[-1]
            last_ts = ts[b - 1]
            if inc.raised and last_ts - inc.last_event_ts >= cfg.update_every_s:
                inc.last_event_ts = last_ts
                inc.evidence["latest"] = rows.snapshot(run[-1])
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
            raised_at=alert.raised,
            severity_code=SEVERITY_LEVELS.index(alert.severity)
            if alert.severity is not self.detector.config.severity
            and alert.severity is not Severity.CRITICAL
            else 0,
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
        self._sync(slot)

    def open_alerts(self, latest_ts: float) -> list[Alert]:
        """Return the alerts open now, as they stand."""
        return [
            self._alert(slot, self._pull(slot), None, latest_ts)
            for slot, inc in sorted(self.incidents.items())
            if inc.raised
        ]


class Engine:
    """Runs the detectors over batches, live and in replay alike, and emits alert events."""

    def __init__(
        self,
        registry: MeterRegistry,
        detector_list: Iterable[Detector],
        calendar: Calendar | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        self.registry = registry
        #: Data time between two polls of the detectors (silences, closed windows), s.
        self.tick_s = tick_s
        self.fleet = FleetArrays.from_registry(registry)
        self.calendar = calendar or Calendar()
        self.ledger = HourlyLedger(self.fleet)
        #: Working days the customers rested on (a holiday the calendar may lack): judged as
        #: days of rest once over, with `[calendar] rest_days_from_data`.
        self.rest_days = RestDayWatch(self.fleet.customer_class, self.calendar)
        self.detectors = list(detector_list)
        n = len(registry)
        self._last_ts = np.full(n, -np.inf)
        #: Per slot: the meter's usual interval between readings, and the silence limit it
        #: implies (data time), learned from the readings themselves.
        self.interval_s = np.full(n, np.nan)
        self.silence_s = np.full(n, MIN_SILENCE_S)
        self.lifecycles = [Lifecycle(d, registry, self.silence_s) for d in self.detectors]
        #: What every detector has open, for detectors that weigh each other's alerts.
        self.alert_state = OpenAlerts(
            raised={life.detector.kind: life.raised for life in self.lifecycles},
            figures={life.detector.kind: life.state for life in self.lifecycles},
            kwh_row=1 + _FIGURES.index("kwh_lost"),
            unmetered=frozenset(
                life.detector.kind for life in self.lifecycles if life.detector.unmetered
            ),
        )
        #: Per slot, a bit per quantity the meter has ever sent (QUANTITIES order).
        self.seen = np.zeros(n, dtype=np.int64)
        self.now = -math.inf
        #: Index of the last tick data time has reached (None before the first reading).
        self._tick: int | None = None
        self.readings_seen = 0
        #: Rows dropped: not a finite time, or older than their meter's latest reading (a
        #: late row would move windows and incidents backwards).
        self.rows_dropped = 0
        #: Rows refused for a time far ahead of the fleet's data time, by meter id (shared
        #: with the reading validator's report when the service runs one).
        self.clock_report: ValidationReport = ValidationReport()

    def _intervals(self, batch: ReadingBatch, order: npt.NDArray[np.int64]) -> FloatArray:
        """Return, per row, the data time its reading covers; learn each meter's interval.

        A reading covers the time since the same meter's previous one, unless that gap was
        a silence (longer than the meter's silence limit): then it covers nothing. `order`
        has the rows by meter (`by_meter`).
        """
        dt, moved, ratio = gaps_compiled(
            batch.ts,
            batch.slot,
            order,
            self._last_ts,
            self.silence_s,
            self.interval_s,
            _INTERVAL_LIMITS,
        )
        if moved.size:
            # A changed interval moves a step (on a log scale): the rest is done already.
            self.interval_s[moved] = self.interval_s[moved] * ratio**_INTERVAL_RATE
            self.silence_s[moved] = np.maximum(
                MIN_SILENCE_S, SILENCE_INTERVALS * self.interval_s[moved]
            )
        return dt

    def process(self, batch: ReadingBatch) -> list[AlertEvent]:
        """Run every detector over a batch and return the events.

        Rows without a finite time, and rows older than their meter's latest reading (late
        rows), are dropped and counted in `rows_dropped` before any detector sees them, so
        no window (energy_balance, consumption_drop) or incident moves backwards. Rows far
        ahead of the data time are not judged here: the readings reader rejects them. The
        rows are taken in time order, cut at every tick of data time, and the detectors
        are polled when data time passes a tick: the events do not depend on how the
        readings were batched.
        """
        events: list[AlertEvent] = []
        # The common case (every row usable, in time order, none ahead) in one look.
        fine, latest, bounds = scan_compiled(batch.ts, batch.slot, self._last_ts, self.tick_s)
        if not fine:
            usable = np.isfinite(batch.ts) & (batch.ts >= self._last_ts[batch.slot])
            self.rows_dropped += int((~usable).sum())
            batch = batch.take(np.flatnonzero(usable))
            latest = float(batch.ts.max()) if len(batch) else -math.inf
        if len(batch) == 0:
            return events
        # The fleet's data time: the latest seen, or where most of this batch lies (a few
        # rows of one device with a wrong clock cannot carry it).
        if latest <= self.now + MAX_AHEAD_S:
            ahead = None  # the fleet's data time is at least `now`: no row can be ahead
        else:
            reference = max(self.now, float(np.quantile(batch.ts, 0.9)))
            ahead = batch.ts > reference + MAX_AHEAD_S
        if ahead is not None and ahead.any():
            self.rows_dropped += int(ahead.sum())
            self.clock_report.readings_refused["clock_ahead"] += int(ahead.sum())
            for slot in batch.slot[ahead].tolist():
                self.clock_report.clock_off[self.registry.by_slot(slot).id] += 1
            batch = batch.take(np.flatnonzero(~ahead))
        if not fine or (ahead is not None and ahead.any()) or not bounds.size:
            if np.any(batch.ts[1:] < batch.ts[:-1]):
                batch = batch.take(np.argsort(batch.ts, kind="stable"))
            _, _, bounds = scan_compiled(batch.ts, batch.slot, self._last_ts, self.tick_s)
        for a, b in itertools.pairwise(bounds.tolist()):
            tick = math.floor(float(batch.ts[a]) / self.tick_s)
            if self._tick is not None and tick > self._tick:
                self._poll(tick * self.tick_s, events)
            self._tick = tick if self._tick is None else max(self._tick, tick)
            part = batch if (a, b) == (0, len(batch)) else _slice(batch, a, b)
            self._step(part, events)
        self.readings_seen += len(batch)
        return events

    def _context(self, batch: ReadingBatch, dt: FloatArray, now: float) -> BatchContext:
        hours, balances = self.ledger.take()
        self.rest_days.add(hours)
        if self.calendar.settings.rest_days_from_data:
            for day in self.rest_days.settle():
                self.calendar.rest_on(day)
        return BatchContext(
            batch=batch,
            fleet=self.fleet,
            dt=dt,
            now=now,
            last_seen=self._last_ts,
            interval_s=self.interval_s,
            calendar=self.calendar,
            hours=hours,
            balances=balances,
            alerts=self.alert_state,
        )

    def _step(self, batch: ReadingBatch, events: list[AlertEvent]) -> None:
        """Run every detector over rows of one tick."""
        order = by_meter_compiled(batch.slot, len(self.registry))
        dt = self._intervals(batch, order)
        self.now = max(self.now, float(batch.ts.max()))
        mark_seen_compiled(batch.values, batch.slot, self.seen)
        self.ledger.add(batch, dt, order)
        ctx = self._context(batch, dt, self.now)

        def snapshot(row: int) -> dict[str, Any]:
            return _snapshot(batch, row)

        for life in self.lifecycles:
            cond = life.detector.step(batch, ctx)
            life.advance(Rows(batch.ts, batch.slot, cond, dt, snapshot, batch), events)

    def _poll(self, at: float, events: list[AlertEvent]) -> None:
        """Collect the verdicts detectors reach without a reading, at tick time `at`."""
        self.ledger.expire(at, self.silence_s)
        ctx = self._context(ReadingBatch.empty(0), np.zeros(0), at)
        for life in self.lifecycles:
            polled = life.detector.poll(ctx)
            if polled is None or not len(polled.slot):
                continue
            times = polled.ts if polled.ts is not None else np.full(len(polled.slot), at)
            described = _describer(life.detector, polled.slot, times)
            life.advance(Rows(times, polled.slot, polled.conditions, polled.dt, described), events)

    def restore(self, alerts: Iterable[Alert]) -> int:
        """Take back the active alerts of a previous run; return how many were taken."""
        by_kind = {life.detector.kind: life for life in self.lifecycles}
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
        for life in self.lifecycles:
            inc = life.incidents.get(slot)
            if life.detector.kind is alert.kind and inc is not None and inc.alert_id == alert.id:
                life._drop(slot)
                # A new incident starts after the clear, in a later second than this one,
                # so it gets an alert id of its own.
                life.not_before[slot] = max(self.now, math.floor(alert.start) + 1.0)
                return True
        return False

    def silent_reasons(self, meter_id: str) -> dict[str, str]:
        """Return, per detector that cannot judge a meter from what it sends, the reason.

        Empty for a meter not heard from yet (nothing to say) and for one every detector
        can judge.
        """
        slot = self.registry.slot(meter_id)
        seen = int(self.seen[slot])
        if not seen:
            return {}
        reasons: dict[str, str] = {}
        for det in self.detectors:
            for group in det.requires:
                if not any(seen >> QUANTITIES.index(q) & 1 for q in group):
                    missing = " or ".join(group)
                    reasons[det.name] = f"silent: the meter never sent {missing}"
                    break
        return reasons

    def active_count(self) -> int:
        """Return how many alerts are open now."""
        return sum(1 for life in self.lifecycles for inc in life.incidents.values() if inc.raised)

    def open_alerts(self) -> list[Alert]:
        """Return every alert open now (replay writes these with end null at the end)."""
        return [a for life in self.lifecycles for a in life.open_alerts(self.now)]
