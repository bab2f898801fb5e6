"""Case-work records the alert database keeps beside the alerts themselves."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    """What a crew checks at the meter (DOMAIN.md section 1), with notes and evidence."""

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


class User(_Record):
    """Someone allowed to use the control room."""

    id: int
    name: str
    role: str
    created_at: float
    has_password: bool = False


class CaseState(_Record):
    """The control-room side of an alert: acknowledged and assigned, apart from active."""

    alert_id: str
    acknowledged: bool
    acknowledged_by: str | None
    assignee: str | None
