"""Case-work records the alert database keeps beside the alerts themselves."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Outcome(enum.StrEnum):
    """What a field crew found on site, fed back to rate each detector."""

    THEFT_CONFIRMED = "theft_confirmed"
    METER_FAULT = "meter_fault"
    NO_FAULT_FOUND = "no_fault_found"
    NO_ACCESS = "no_access"


class WorkOrderStatus(enum.StrEnum):
    """Where an investigation work order stands."""

    OPEN = "open"
    DISPATCHED = "dispatched"
    DONE = "done"
    CANCELLED = "cancelled"


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


class WorkOrder(_Record):
    """An investigation for a field crew and, once done, its outcome."""

    id: int
    alert_id: str
    created_by: str
    assignee: str | None
    instructions: str
    status: WorkOrderStatus
    created_at: float
    updated_at: float
    outcome: Outcome | None = None
    outcome_note: str = ""
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


class CaseState(_Record):
    """The control-room side of an alert: acknowledged and assigned, apart from active."""

    alert_id: str
    acknowledged: bool
    acknowledged_by: str | None
    assignee: str | None
