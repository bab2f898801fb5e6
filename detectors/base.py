"""The detector contract: a config model, the quantities needed, and a vectorised step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from meterguard.model import (
    QUANTITY_INDEX,
    AlertKind,
    FloatArray,
    IntArray,
    MeterRegistry,
    ReadingBatch,
    Severity,
    SummaryMessage,
)

# Re-exported: the detectors' summaries take it from here.
from meterguard.timefmt import format_duration as format_duration

if TYPE_CHECKING:
    from detectors.context import BatchContext

#: Values of `Conditions.holds`.
HOLDS: np.int8 = np.int8(1)
CLEAR: np.int8 = np.int8(0)
UNKNOWN: np.int8 = np.int8(-1)

#: Severities a verdict may ask for, by `Conditions.severity` code (0: the configured one).
SEVERITY_LEVELS: tuple[Severity | None, ...] = (
    None,
    Severity.WARNING,
    Severity.MINOR,
    Severity.MAJOR,
    Severity.CRITICAL,
)

#: Rows of a batch's values the compiled passes read (each phase's three rows are adjacent).
V1_ROW, I1_ROW, IN_ROW, P1_ROW, Q1_ROW = (QUANTITY_INDEX[q] for q in ("v1", "i1", "in", "p1", "q1"))


class ClassTiming(BaseModel):
    """Persistence and hysteresis for one customer class, overriding the detector's own."""

    model_config = ConfigDict(extra="forbid")

    raise_after_s: float | None = Field(default=None, ge=0, description="Overrides raise_after_s.")
    clear_after_s: float | None = Field(default=None, ge=0, description="Overrides clear_after_s.")


class DetectorConfig(BaseModel):
    """Options every detector has: on/off, persistence before raising, hysteresis to clear."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Run this detector.")
    raise_after_s: float = Field(
        default=120.0,
        ge=0,
        description="The condition must persist this long (data time, for persist_fraction of "
        "it) before the alert is raised; never on the reading it began with.",
    )
    clear_after_s: float = Field(
        default=300.0, ge=0, description="It must be absent this long before the alert clears."
    )
    persist_fraction: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Share of the data time since a pending incident began (at least "
        "raise_after_s of it) in which the condition must have held; readings that say "
        "nothing (too little load to tell, not measured) count neither way.",
    )
    update_every_s: float = Field(
        default=900.0, gt=0, description="Data time between update events of an active alert."
    )
    severity: Severity = Field(default=Severity.MAJOR, description="Severity of its alerts.")
    critical_kwh: float = Field(
        default=200.0, gt=0, description="An alert whose estimated loss passes this is critical."
    )
    classes: dict[str, ClassTiming] = Field(
        default_factory=dict,
        description="Per customer class (meters.csv customer_class, matched "
        "case-insensitively) timing overrides; a class no meter has is logged at start.",
    )


class MisfitConfig(DetectorConfig):
    """Options of a metering-fitness detector: a misfit shows every working day, one case."""

    clear_after_s: float = Field(
        default=86_400.0,
        ge=0,
        description="Absence before clearing: a misfit that shows every working day is one case.",
    )


@dataclass(frozen=True, slots=True)
class Conditions:
    """A detector's verdict on each row of a batch."""

    #: HOLDS, CLEAR or UNKNOWN (the row cannot tell, e.g. the quantities were not measured).
    holds: npt.NDArray[np.int8]
    #: The affected phase (1-3), 0 when the condition is not about one phase.
    phase: npt.NDArray[np.int8]
    #: The power going unmetered while the condition holds, W (for the kWh-lost estimate).
    loss_w: FloatArray
    #: How strongly the row shows the condition, 0-1 (feeds the alert's confidence).
    score: FloatArray
    #: The figure that triggered, in the detector's own unit (for the summary).
    magnitude: FloatArray
    #: Data time the condition began when a window showed it, NaN: the row's own time.
    onset: FloatArray | None = None
    #: True where the row starts a NEW incident although one is open (a distinct step in
    #: what the detector sees): the open alert clears and a new one begins.
    restart: npt.NDArray[np.bool_] | None = None
    #: Per row, an index into SEVERITY_LEVELS (0: the detector's configured severity); an
    #: incident takes the highest its rows gave.
    severity: npt.NDArray[np.int8] | None = None

    @classmethod
    def none(cls, n: int) -> Conditions:
        """Return conditions that hold nowhere in a batch of n rows."""
        # Two blocks, not five arrays: every detector makes these for every batch.
        codes = np.zeros((2, n), dtype=np.int8)
        figures = np.zeros((3, n))
        return cls(
            holds=codes[0],
            phase=codes[1],
            loss_w=figures[0],
            score=figures[1],
            magnitude=figures[2],
        )

    @classmethod
    def unknown(cls, n: int) -> Conditions:
        """Return conditions that cannot be told on any row of a batch of n rows."""
        base = cls.none(n)
        base.holds.fill(UNKNOWN)
        return base

    def outputs(
        self,
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8], FloatArray, FloatArray, FloatArray]:
        """Return the arrays a compiled pass fills, in its argument order (holds to magnitude)."""
        return (self.holds, self.phase, self.loss_w, self.score, self.magnitude)


def _joined(arrays: list[Any]) -> Any:
    """Concatenate optional arrays: None unless every part has one."""
    if any(a is None for a in arrays):
        return None
    return np.concatenate(arrays)


@dataclass(frozen=True, slots=True)
class SlotConditions:
    """Verdicts a detector reaches without a reading (silence, windows, days), per meter slot."""

    slot: IntArray
    conditions: Conditions
    #: Data time each verdict covers, s (the kWh-lost credit of a window verdict).
    dt: FloatArray
    #: Data time of each verdict (a window's end), s; None: the time of the poll.
    ts: FloatArray | None = None

    @classmethod
    def concat(cls, parts: list[SlotConditions]) -> SlotConditions:
        """Join the verdicts of several windows, in the order given."""
        if len(parts) == 1:
            return parts[0]
        conds = [p.conditions for p in parts]
        return cls(
            slot=np.concatenate([p.slot for p in parts]),
            conditions=Conditions(
                **{
                    name: _joined([getattr(c, name) for c in conds])
                    for name in Conditions.__dataclass_fields__
                }
            ),
            dt=np.concatenate([p.dt for p in parts]),
            ts=_joined([p.ts for p in parts]),
        )


@dataclass(slots=True)
class IncidentFacts:
    """What the engine knows about one incident when a detector writes its summary."""

    phase: int
    duration_s: float
    peak_magnitude: float
    kwh_lost: float

    def params(self) -> dict[str, float | int | str]:
        """Return the figures a summary message carries."""
        return {
            "phase": self.phase,
            "duration_s": self.duration_s,
            "magnitude": self.peak_magnitude,
            "kwh": self.kwh_lost,
        }


class Detector(ABC):
    """A detector: subclasses set the class variables and implement `step` and `summarise`."""

    name: ClassVar[str]
    kind: ClassVar[AlertKind]
    config_model: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: Quantities the detector reads (documentation and checks).
    needs: ClassVar[tuple[str, ...]] = ()
    #: What a meter must have sent at least once for the detector to judge it: each entry
    #: a group of quantities of which one will do. Until then the detector stays silent
    #: on that meter, and the meter's status says why.
    requires: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: Whether its alerts' estimated loss is energy the meter did not record (a bypass, a
    #: lost phase): a transformer's check meter sees it as unexplained.
    unmetered: ClassVar[bool] = False

    def __init__(self, config: DetectorConfig, registry: MeterRegistry) -> None:
        self.config = config
        self.registry = registry

    @abstractmethod
    def step(self, batch: ReadingBatch, ctx: BatchContext) -> Conditions:
        """Return, for every row of the batch, whether the condition holds."""

    def poll(self, ctx: BatchContext) -> SlotConditions | None:
        """Return verdicts reached at the batch's data time without a reading (default none)."""
        return None

    def evidence(self, slot: int) -> dict[str, Any]:
        """Return the detector's own figures about a meter, added to an alert when it opens."""
        return {}

    @abstractmethod
    def summarise(self, facts: IncidentFacts) -> str:
        """Return the one-line human summary of an incident."""

    def summary_message(self, facts: IncidentFacts) -> SummaryMessage:
        """Return the summary as a catalogue key and figures (the API renders it per reader)."""
        return SummaryMessage(key=f"summary.{self.name}", params=facts.params())


DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator that adds a detector to the registry under its name."""
    if cls.name in DETECTORS:
        raise ValueError(f"detector name {cls.name!r} registered twice")
    DETECTORS[cls.name] = cls
    return cls


def phase_label(phase: int) -> str:
    """Name the phase an incident concerns, or the meter when none."""
    return f"phase {phase}" if phase else "meter"


def ewma_weight(seconds: FloatArray, tau_s: float) -> FloatArray:
    """Return the weight a new observation spanning `seconds` gets in a time-constant EWMA."""
    weight: FloatArray = 1.0 - np.exp(-np.maximum(seconds, 0.0) / tau_s)
    return weight


def config_schema(cls: type[Detector]) -> dict[str, Any]:
    """Return a detector's option defaults, for docs and the example config."""
    return cls.config_model().model_dump(mode="json")
