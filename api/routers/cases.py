"""Case work on alerts: acknowledge, comment, assign, the audit trail, and the detector stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import OPERATORS, Operator, Principal, Reader, require
from api.deps import AlertRepoDep, AlertServiceDep, CaseRepoDep, RegistryDep
from api.i18n.reader import ReaderLanguage
from api.schemas import AlertOut, finite
from meterguard.errors import AlertAlreadyClearedError, AlertNotFoundError
from meterguard.roles import Role
from meterguard.stores.alertdb.core import ENGINE_ACTOR
from meterguard.stores.records import Acknowledgement, Assignment, AuditEntry, Comment, WorkOrder

router = APIRouter(prefix="/api", tags=["cases"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such alert"}}
Commenter = Annotated[Principal, Depends(require(OPERATORS | {Role.CREW}))]


#: Request bodies refuse fields they do not know: a misspelt one is a 422, not ignored.
STRICT = ConfigDict(extra="forbid")
#: White space, spelt out: regex engines and str.strip() each have their own idea of it.
SPACE = " \t\n\v\f\r"
#: Text with a character that is neither white space nor NUL.
NOT_BLANK = "^[^\\x00]*[^\\x00\\x09-\\x0d\\x20][^\\x00]*$"


class AckIn(BaseModel):
    """An acknowledgement."""

    model_config = STRICT

    note: str = Field(default="", max_length=2000)


class CommentIn(BaseModel):
    """A comment."""

    model_config = STRICT

    text: str = Field(min_length=1, max_length=5000)


class AssignIn(BaseModel):
    """A hand-over."""

    model_config = STRICT

    assignee: str = Field(min_length=1, max_length=100)


class ClearIn(BaseModel):
    """Why an operator clears an alert by hand."""

    model_config = STRICT

    reason: str = Field(
        min_length=1,
        max_length=2000,
        description="Kept without the spaces around it; white space alone is no reason.",
        json_schema_extra={"pattern": NOT_BLANK},
    )

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, reason: str) -> str:
        stripped = reason.strip(SPACE)
        if not stripped:
            raise ValueError("the reason is only white space")
        return stripped


class CaseOut(BaseModel):
    """Everything the control room did about an alert."""

    alert_id: str
    acknowledgements: list[Acknowledgement]
    assignments: list[Assignment]
    comments: list[Comment]
    work_orders: list[WorkOrder]
    audit: list[AuditEntry]


class DetectorRow(BaseModel):
    """One detector kind: what it raised and what the crews found."""

    kind: str
    raised: int = Field(description="Alerts of this kind in the alert database.")
    confirmed: int = Field(description="Work orders closed with theft_confirmed.")
    no_fault_found: int = Field(description="Work orders closed with no_fault_found.")
    precision: float | None = Field(
        description="Theft confirmed / outcomes with access (null: none yet)."
    )
    open: int = Field(default=0, description="Active alerts of this kind.")
    open_kwh: float | None = Field(
        default=0.0, description="Their summed estimated kWh lost; null if not a finite figure."
    )


class OpenCase(BaseModel):
    """An active alert, ranked by what it is estimated to lose."""

    alert_id: str
    meter: str
    kind: str
    severity: str
    start: float
    estimated_kwh_lost: float | None = Field(description="null when not a finite figure.")


class DetectorStats(BaseModel):
    """How field outcomes rate each detector, and the open cases by estimated loss."""

    detectors: list[DetectorRow] = Field(description="Per kind, sorted by kind.")
    open_cases: list[OpenCase] = Field(description="Active alerts, largest estimated loss first.")

    outcomes: dict[str, dict[str, int]] = Field(
        description="Per alert kind, how many work orders closed with each outcome."
    )
    precision: dict[str, float | None] = Field(
        description="Per kind: theft confirmed / outcomes with access (null: none yet)."
    )


def _missing(alert_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no alert {alert_id!r}")


@router.post("/alerts/{alert_id}/acknowledge", response_model=Acknowledgement, responses=NOT_FOUND)
async def acknowledge(
    alert_id: str, who: Operator, alerting: AlertServiceDep, body: AckIn | None = None
) -> Acknowledgement:
    """Acknowledge an alert: seen, being handled."""
    try:
        return await alerting.acknowledge(alert_id, who.name, body.note if body else "")
    except AlertNotFoundError:
        raise _missing(alert_id) from None


@router.post("/alerts/{alert_id}/comments", response_model=Comment, responses=NOT_FOUND)
async def add_comment(
    alert_id: str, body: CommentIn, who: Commenter, cases: CaseRepoDep
) -> Comment:
    """Add a comment to an alert (a crew member: only on alerts of their work orders)."""
    if who.role is Role.CREW and not await cases.work_orders(
        alert_id=alert_id, assignee=who.name, limit=1
    ):
        raise HTTPException(status_code=403, detail="not an alert of your work orders")
    try:
        return await cases.comment(alert_id, who.name, body.text)
    except AlertNotFoundError:
        raise _missing(alert_id) from None


@router.post("/alerts/{alert_id}/assign", response_model=Assignment, responses=NOT_FOUND)
async def assign(
    alert_id: str, body: AssignIn, who: Operator, alerting: AlertServiceDep
) -> Assignment:
    """Hand an alert to someone."""
    try:
        return await alerting.assign(alert_id, body.assignee, who.name)
    except AlertNotFoundError:
        raise _missing(alert_id) from None


@router.post(
    "/alerts/{alert_id}/clear",
    response_model=AlertOut,
    responses={**NOT_FOUND, 409: {"description": "The alert has ended already"}},
)
async def clear(
    alert_id: str,
    body: ClearIn,
    who: Operator,
    language: ReaderLanguage,
    alerting: AlertServiceDep,
    alerts: AlertRepoDep,
    registry: RegistryDep,
) -> AlertOut:
    """Clear an active alert by hand, with a reason kept in its evidence and audit trail.

    The detectors forget the incident: if the condition still holds, a new alert opens
    once it has persisted again.
    """
    try:
        alert = await alerting.clear(alert_id, who.name, body.reason)
    except AlertNotFoundError:
        raise _missing(alert_id) from None
    except AlertAlreadyClearedError:
        ended = f"alert {alert_id!r} has ended already"
        raise HTTPException(status_code=409, detail=ended) from None
    listing = await alerts.listing(alert_id)
    return AlertOut.of(listing, registry.get(alert.meter), language)


@router.get("/alerts/{alert_id}/case", response_model=CaseOut, responses=NOT_FOUND)
async def case(alert_id: str, who: Reader, alerts: AlertRepoDep, cases: CaseRepoDep) -> CaseOut:
    """Return the acknowledgements, assignments, comments, work orders and audit trail."""
    try:
        await alerts.listing(alert_id)
    except AlertNotFoundError:
        raise _missing(alert_id) from None
    orders = await cases.work_orders(alert_id=alert_id)
    audit = await cases.audit(alert_id=alert_id)
    if who.role is Role.CREW:
        # A crew member sees the case through their own work orders, not other crews'.
        orders = [o for o in orders if o.assignee == who.name]
        if not orders:
            raise HTTPException(status_code=403, detail="not an alert of your work orders")
        own = {o.id for o in orders}
        audit = [
            e
            for e in audit
            if e.actor in (who.name, ENGINE_ACTOR) or e.detail.get("work_order") in own
        ]
    return CaseOut(
        alert_id=alert_id,
        acknowledgements=await cases.acknowledgements(alert_id),
        assignments=await cases.assignments(alert_id),
        comments=await cases.comments(alert_id),
        work_orders=orders,
        audit=audit,
    )


@router.get("/stats/detectors", response_model=DetectorStats)
async def detector_stats(
    who: Reader,
    alerts: AlertRepoDep,
    cases: CaseRepoDep,
    open_cases: Annotated[int, Query(ge=0, le=500, description="How many open cases.")] = 20,
) -> DetectorStats:
    """Return per detector kind the alerts raised, the crews' outcomes and the precision."""
    outcomes = await cases.outcomes_by_kind()
    raised = await alerts.alerts_by_kind()
    still_open = await alerts.open_by_kind()
    precision: dict[str, float | None] = {}
    rows = []
    for kind in sorted(set(outcomes) | set(raised)):
        open_count, open_kwh = still_open.get(kind, (0, 0.0))
        counts = outcomes.get(kind, {})
        # No access says nothing about the detector; every other outcome judged it.
        judged = sum(n for outcome, n in counts.items() if outcome != "no_access")
        precision[kind] = counts.get("theft_confirmed", 0) / judged if judged else None
        rows.append(
            DetectorRow(
                kind=kind,
                raised=raised.get(kind, 0),
                confirmed=counts.get("theft_confirmed", 0),
                no_fault_found=counts.get("no_fault_found", 0),
                precision=precision[kind],
                open=open_count,
                open_kwh=finite(round(open_kwh, 3)),
            )
        )
    top = await alerts.list(active=True, order="kwh", limit=open_cases) if open_cases else []
    return DetectorStats(
        detectors=rows,
        open_cases=[
            OpenCase(
                alert_id=a.id,
                meter=a.meter,
                kind=a.kind.value,
                severity=a.severity.value,
                start=a.start,
                estimated_kwh_lost=finite(a.estimated_kwh_lost),
            )
            for a in top
        ],
        outcomes=outcomes,
        precision={k: v for k, v in precision.items() if k in outcomes},
    )
