"""The data model every room shares: columnar reading batches, meters, alerts."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from meterguard.errors import BatchShapeError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]
EventArray = npt.NDArray[np.uint32]

#: The measured quantities (the readings.csv columns of docs/FORMATS.md), in batch order.
QUANTITIES: tuple[str, ...] = (
    "v1", "v2", "v3",
    "i1", "i2", "i3",
    "in",
    "p1", "p2", "p3",
    "q1", "q2", "q3",
    "e_imp", "e_exp",
    "f",
)  # fmt: skip
QUANTITY_INDEX: dict[str, int] = {name: i for i, name in enumerate(QUANTITIES)}


class MeterEvent(enum.IntFlag):
    """Meter-reported events, one bit each, as carried in `ReadingBatch.events`."""

    COVER_OPEN = 1
    COVER_CLOSED = 2
    TERMINAL_COVER_OPEN = 4
    TERMINAL_COVER_CLOSED = 8
    MAGNETIC_FIELD = 16
    POWER_DOWN = 32
    POWER_UP = 64


EVENT_NAMES: dict[str, MeterEvent] = {e.name.lower(): e for e in MeterEvent if e.name}


def encode_events(names: Iterable[str]) -> tuple[int, list[str]]:
    """Turn event names into a bit mask, returning the unknown names apart."""
    mask = 0
    unknown: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        flag = EVENT_NAMES.get(name.lower())
        if flag is None:
            unknown.append(name)
        else:
            mask |= flag
    return mask, unknown


def decode_events(mask: int) -> list[str]:
    """Turn a bit mask back into event names, in a stable order."""
    return [name for name, flag in EVENT_NAMES.items() if mask & flag]


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """Readings of many meters, one column per quantity; NaN means "not measured".

    `values` has shape (len(QUANTITIES), n): each quantity is one contiguous row so a
    detector reads a column without copying.
    """

    ts: FloatArray
    slot: IntArray
    values: FloatArray
    events: EventArray
    #: Event codes a meter sent that the model does not know, by row index.
    unknown_events: Mapping[int, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.ts.shape[0]
        if self.slot.shape != (n,) or self.events.shape != (n,):
            raise BatchShapeError(f"ts, slot and events must all have {n} rows")
        if self.values.shape != (len(QUANTITIES), n):
            raise BatchShapeError(
                f"values must have shape ({len(QUANTITIES)}, {n}), got {self.values.shape}"
            )

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def col(self, quantity: str) -> FloatArray:
        """Return the column of one quantity (a view, not a copy)."""
        column: FloatArray = self.values[QUANTITY_INDEX[quantity]]
        return column

    @classmethod
    def empty(cls, n: int) -> ReadingBatch:
        """Return a batch of n rows with every quantity unmeasured, to be filled in."""
        return cls(
            ts=np.zeros(n, dtype=np.float64),
            slot=np.zeros(n, dtype=np.int32),
            values=np.full((len(QUANTITIES), n), np.nan, dtype=np.float64),
            events=np.zeros(n, dtype=np.uint32),
        )

    @classmethod
    def concat(cls, batches: Sequence[ReadingBatch]) -> ReadingBatch:
        """Join batches in the order given."""
        if len(batches) == 1:
            return batches[0]
        unknown: dict[int, Sequence[str]] = {}
        offset = 0
        for b in batches:
            for row, codes in b.unknown_events.items():
                unknown[row + offset] = codes
            offset += len(b)
        return cls(
            ts=np.concatenate([b.ts for b in batches]),
            slot=np.concatenate([b.slot for b in batches]),
            values=np.concatenate([b.values for b in batches], axis=1),
            events=np.concatenate([b.events for b in batches]),
            unknown_events=unknown,
        )

    def take(self, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> ReadingBatch:
        """Return the rows selected by an index or a mask, in that order."""
        index = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
        remap = {int(old): new for new, old in enumerate(index)}
        return ReadingBatch(
            ts=self.ts[index],
            slot=self.slot[index],
            values=self.values[:, index],
            events=self.events[index],
            unknown_events={remap[r]: c for r, c in self.unknown_events.items() if r in remap},
        )


Service = Literal["1p2w", "3p4w", "3p3w"]
Role = Literal["customer", "feeder"]


class Meter(BaseModel):
    """A meter as the registry knows it (the columns of meters.csv)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="Meter id, unique in the fleet.")
    service: Service = Field(description="1p2w single-phase, 3p4w or 3p3w three-phase.")
    nominal_v: float = Field(gt=0, description="Nominal phase-to-neutral voltage, V.")
    ct_primary_a: float | None = Field(
        default=None, gt=0, description="Rated CT primary current, A; None if whole-current."
    )
    generation: bool = Field(default=False, description="May legitimately export.")
    transformer: str | None = Field(default=None, description="Supplying transformer id.")
    role: Role = Field(default="customer", description="customer, or feeder check meter.")
    customer_class: str | None = Field(default=None, description="residential, ...")
    contracted_kw: float | None = Field(default=None, ge=0, description="Contracted kW.")
    rated_a: float | None = Field(
        default=None, gt=0, description="Maximum rated current of a whole-current meter, A."
    )

    @property
    def phases(self) -> int:
        """Number of phase conductors the meter measures."""
        return 1 if self.service == "1p2w" else 3


class MeterRegistry:
    """The fleet: meters by id and by slot, plus per-slot arrays for the detectors."""

    def __init__(self, meters: Iterable[Meter] = ()) -> None:
        self._meters: list[Meter] = []
        self._slots: dict[str, int] = {}
        for meter in meters:
            self.add(meter)

    def add(self, meter: Meter) -> int:
        """Register a meter and return its slot; a duplicate id is an error."""
        if meter.id in self._slots:
            raise ValueError(f"meter {meter.id!r} is listed twice")
        self._slots[meter.id] = len(self._meters)
        self._meters.append(meter)
        return self._slots[meter.id]

    def __len__(self) -> int:
        return len(self._meters)

    def __iter__(self) -> Any:
        return iter(self._meters)

    def __contains__(self, meter_id: object) -> bool:
        return meter_id in self._slots

    def slot(self, meter_id: str) -> int:
        """Return the slot of a meter id (KeyError when unknown)."""
        return self._slots[meter_id]

    def get(self, meter_id: str) -> Meter | None:
        """Return a meter by id, or None when it is not registered."""
        slot = self._slots.get(meter_id)
        return None if slot is None else self._meters[slot]

    def by_slot(self, slot: int) -> Meter:
        """Return the meter in a slot."""
        return self._meters[slot]

    def flag_array(self, predicate: Any) -> npt.NDArray[np.bool_]:
        """Return a bool per slot, computed once for vectorised detector masks."""
        return np.fromiter(
            (bool(predicate(m)) for m in self._meters), dtype=np.bool_, count=len(self._meters)
        )

    def float_array(self, getter: Any) -> FloatArray:
        """Return a float per slot (NaN where the getter gives None)."""
        out = np.full(len(self._meters), np.nan)
        for i, m in enumerate(self._meters):
            value = getter(m)
            if value is not None:
                out[i] = float(value)
        return out


class Severity(enum.StrEnum):
    """Alert severity, as in established alarm tools."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


class AlertKind(enum.StrEnum):
    """The alert kinds meterguard raises and labels name (docs/FORMATS.md)."""

    BYPASS = "bypass"
    REVERSAL = "reversal"
    IMBALANCE = "imbalance"
    VOLTAGE_LOSS = "voltage_loss"
    PHASE_SHIFT = "phase_shift"
    CONSUMPTION_DROP = "consumption_drop"
    TAMPER = "tamper"
    COMMS_LOSS = "comms_loss"
    ENERGY_BALANCE = "energy_balance"
    CT_RATIO = "ct_ratio"
    #: Metering that does not fit the load (docs/PHYSICS.md, "Metering fitness").
    WIRING_MISFIT = "wiring_misfit"
    OVERLOAD = "overload"
    OVER_DEMAND = "over_demand"
    #: A report of suspected theft from a person (hotline, WeChat, web, in person), entered
    #: by an operator (POST /api/tips): a case like a detector's, raised by no detector.
    TIP = "tip"


#: Where a tip came in: the customer-service channels of an inspection department.
TipChannel = Literal["hotline", "wechat", "web", "in_person", "letter", "other"]


class AlertEventType(enum.StrEnum):
    """What an alert event does to the alert it names."""

    OPEN = "open"
    UPDATE = "update"
    CLEAR = "clear"


class SummaryMessage(BaseModel):
    """An alert's summary as a catalogue key and its figures, rendered in a reader's language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="Message key in the catalogues, e.g. summary.bypass.")
    params: dict[str, float | int | str] = Field(default_factory=dict)


class Alert(BaseModel):
    """One incident at one meter, as raised by the engine and kept by the alert store."""

    model_config = ConfigDict(extra="forbid")

    id: str
    meter: str
    kind: AlertKind
    severity: Severity
    start: float = Field(description="Data time (epoch s) of the first reading showing it.")
    raised: float | None = Field(
        default=None,
        description=(
            "Data time (epoch s) of the reading at which it was raised, after its persistence;"
            " None only for alerts stored before it was kept."
        ),
    )
    end: float | None = Field(default=None, description="Data time it last held; None: open.")
    phase: int | None = None
    confidence: float = Field(ge=0, le=1)
    estimated_kwh_lost: float = 0.0
    summary: str = Field(description="The summary in English, for machines and logs.")
    summary_message: SummaryMessage | None = Field(
        default=None, description="The summary as a key and figures; None for older alerts."
    )
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        """True while the alert has not cleared."""
        return self.end is None


class AlertEvent(BaseModel):
    """An open, update or clear of an alert, carrying the alert as it stands after it."""

    model_config = ConfigDict(extra="forbid")

    type: AlertEventType
    ts: float = Field(description="Data time of the reading that caused the event.")
    alert: Alert
