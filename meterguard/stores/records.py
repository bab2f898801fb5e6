"""Case-work records the alert database keeps beside the alerts themselves."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from meterguard.model import AlertKind, Severity, SummaryMessage


class Outcome(enum.StrEnum):
    """What a field crew found on site, fed back to rate each detector."""

    THEFT_CONFIRMED = "theft_confirmed"
    METER_FAULT = "meter_fault"
    WIRING_ERROR = "wiring_error"
    NO_FAULT_FOUND = "no_fault_found"
    NO_ACCESS = "no_access"


class WorkOrderStatus(enum.StrEnum):
    """Where an investigation work order stands."""

    OPEN = "open"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    DONE = "done"
    CANCELLED = "cancelled"

    @classmethod
    def _missing_(cls, value: object) -> WorkOrderStatus | None:
        # "dispatched" is what clients said before 0003 split it into en route / on site.
        return cls.EN_ROUTE if value == "dispatched" else None


class CheckAnswer(enum.StrEnum):
    """One point of the on-site checklist."""

    YES = "yes"
    NO = "no"
    NOT_CHECKED = "not_checked"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Comment(_Record):
    """A note an operator or crew member left on an alert."""

    id: int
    alert_id: str
    author: str
    text: str
    at: float


class Assignment(_Record):
    """Who an alert was handed to, by whom and when."""

    id: int
    alert_id: str
    assignee: str
    assigned_by: str
    at: float


class Acknowledgement(_Record):
    """An operator saying "seen, on it"."""

    id: int
    alert_id: str
    user: str
    note: str
    at: float


class Checklist(_Record):
    """What a crew checks at the meter (docs/PHYSICS.md, field practice), notes and evidence."""

    seals_intact: CheckAnswer = CheckAnswer.NOT_CHECKED
    wiring_correct: CheckAnswer = CheckAnswer.NOT_CHECKED
    ct_ratio_fits_load: CheckAnswer = CheckAnswer.NOT_CHECKED
    overheating_or_loose_contacts: CheckAnswer = Field(
        default=CheckAnswer.NOT_CHECKED, description="yes: overheating or loose contacts found"
    )
    neutral_and_earth_correct: CheckAnswer = CheckAnswer.NOT_CHECKED
    notes: str = Field(default="", max_length=5000)
    evidence: str = Field(
        default="", max_length=5000, description="What documents the finding: photos, readings."
    )


class WorkOrder(_Record):
    """An investigation for a field crew and, once done, its outcome."""

    id: int
    alert_id: str = Field(description="The first of the alerts the order covers.")
    alert_ids: list[str]
    created_by: str
    assignee: str | None
    instructions: str
    status: WorkOrderStatus
    created_at: float
    updated_at: float
    outcome: Outcome | None = None
    outcome_note: str = ""
    outcome_method: str | None = Field(
        default=None, description="For theft_confirmed: how (an alert kind or free text)."
    )
    recovered_kwh: float | None = None
    checklist: Checklist = Checklist()
    closed_by: str | None = None


class AuditEntry(_Record):
    """One change to a case, kept for the audit trail."""

    id: int
    at: float
    actor: str
    action: str
    alert_id: str | None
    detail: dict[str, Any]


class Photo(_Record):
    """A photo a crew took on site: its content hash, and who took it, when and where."""

    id: int
    sha256: str = Field(description="SHA-256 of the file as uploaded (its name in the store).")
    media_type: str = Field(description="image/jpeg, image/png, image/webp or image/heic.")
    bytes: int
    width: int | None = Field(default=None, description="Pixels (none for HEIC).")
    height: int | None = None
    work_order_id: int
    alert_id: str = Field(description="The alert it documents (one the work order covers).")
    uploaded_by: str
    uploaded_at: float
    latitude: float | None = Field(default=None, description="Where the phone said it was.")
    longitude: float | None = None
    taken_at: str | None = Field(
        default=None,
        description="When the camera says it was taken (EXIF, the camera's local time).",
    )
    file_name: str = Field(default="", description="The name the phone gave the file.")


@dataclass(frozen=True, slots=True)
class NewPhoto:
    """A checked photo to record: its file's hash and facts, and who took it where."""

    sha256: str
    media_type: str
    bytes: int
    width: int | None
    height: int | None
    work_order_id: int
    alert_id: str
    uploaded_by: str
    latitude: float | None = None
    longitude: float | None = None
    taken_at: str | None = None
    file_name: str = ""


class User(_Record):
    """Someone allowed to use the control room."""

    id: int
    name: str
    role: str
    created_at: float
    has_password: bool = False
    language: str | None = None


class CaseState(_Record):
    """The control-room side of an alert: who acknowledged it and who holds it."""

    alert_id: str
    acknowledged_by: str | None
    acknowledged_at: float | None
    assignee: str | None


AlertSort = Literal["start", "kwh", "severity"]
SortDirection = Literal["desc", "asc"]


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Which alerts a list asks for and in what order; every field None means "any"."""

    active: bool | None = None
    acknowledged: bool | None = None
    assignee: str | None = None
    kinds: tuple[AlertKind, ...] = ()
    severities: tuple[Severity, ...] = ()
    #: Only these meters (the API resolves a transformer or a customer class to these).
    meters: tuple[str, ...] | None = None
    #: Alerts that held at some time in [since, until] (data time, epoch s).
    since: float | None = None
    until: float | None = None
    sort: AlertSort = "start"
    direction: SortDirection = "desc"
    #: The sort key of the last row of the previous page; the page starts after it.
    after: tuple[Any, ...] | None = field(default=None, compare=False)

    def fingerprint(self) -> str:
        """Return a short digest of the filters and order, which a cursor must match."""
        shape = {
            "active": self.active,
            "acknowledged": self.acknowledged,
            "assignee": self.assignee,
            "kinds": sorted(k.value for k in self.kinds),
            "severities": sorted(s.value for s in self.severities),
            "meters": None if self.meters is None else sorted(self.meters),
            "since": self.since,
            "until": self.until,
            "sort": self.sort,
            "direction": self.direction,
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertListing:
    """An alert as a list shows it: no evidence, with who acknowledged and holds it.

    A plain dataclass: a page builds up to a thousand of these per request.
    """

    id: str
    meter: str
    kind: AlertKind
    severity: Severity
    start: float
    raised: float | None
    end: float | None
    phase: int | None
    confidence: float
    estimated_kwh_lost: float
    summary: str
    acknowledged_by: str | None
    acknowledged_at: float | None
    assignee: str | None
    summary_message: SummaryMessage | None = None

    @property
    def active(self) -> bool:
        """True while the alert has not cleared."""
        return self.end is None
