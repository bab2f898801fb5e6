"""Work orders: created from alerts by operators, worked by field crews."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.auth import Operator, Reader
from api.deps import CaseRepoDep
from meterguard.errors import AlertNotFoundError
from meterguard.roles import Role
from meterguard.stores.records import Checklist, Outcome, WorkOrder, WorkOrderStatus

router = APIRouter(prefix="/api/work-orders", tags=["work orders"])

#: A closed order is history: its outcome is what rates the detectors.
CLOSED = frozenset({WorkOrderStatus.DONE, WorkOrderStatus.CANCELLED})
#: What a crew may set on its own open order (cancelling or reopening is the office's).
CREW_STATUSES = frozenset({WorkOrderStatus.EN_ROUTE, WorkOrderStatus.ON_SITE, WorkOrderStatus.DONE})

AlertId = Annotated[str, Field(min_length=1, max_length=200)]


class ChecklistIn(Checklist):
    """The on-site checklist as a crew sends it: fields it does not know are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkOrderIn(BaseModel):
    """A new investigation of one or several alerts (alert_id: the older one-alert form)."""

    # The schema says what the validator below checks: one of the two must name an alert.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["alert_ids"], "properties": {"alert_ids": {"type": "array"}}},
                {"required": ["alert_id"], "properties": {"alert_id": {"type": "string"}}},
            ]
        },
    )

    alert_ids: list[AlertId] | None = Field(default=None, min_length=1, max_length=100)
    alert_id: AlertId | None = None
    instructions: str = Field(default="", max_length=5000)
    assignee: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _some_alert(self) -> WorkOrderIn:
        if not self.alert_ids and self.alert_id is None:
            raise ValueError("give alert_ids (at least one) or alert_id")
        return self

    def all_alert_ids(self) -> list[str]:
        """Return the alerts to cover, alert_ids first."""
        ids = list(self.alert_ids or [])
        if self.alert_id is not None and self.alert_id not in ids:
            ids.append(self.alert_id)
        return ids


class WorkOrderChange(BaseModel):
    """A change to a work order; the outcome closes it."""

    status: WorkOrderStatus | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=100)
    outcome: Outcome | None = None
    note: str = Field(default="", max_length=5000)
    outcome_method: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="With theft_confirmed: how it was done (an alert kind or free text).",
    )
    recovered_kwh: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    checklist: ChecklistIn | None = None

    # The schema says what the validator below checks: a method only with theft confirmed.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {
                "required": ["outcome_method"],
                "properties": {"outcome_method": {"type": "string"}},
            },
            "then": {
                "required": ["outcome"],
                "properties": {"outcome": {"const": Outcome.THEFT_CONFIRMED.value}},
            },
        },
    )

    @model_validator(mode="after")
    def _method_needs_theft(self) -> WorkOrderChange:
        if self.outcome_method is not None and self.outcome is not Outcome.THEFT_CONFIRMED:
            raise ValueError("outcome_method goes with the outcome theft_confirmed")
        return self


class WorkOrderList(BaseModel):
    """Work orders, newest first."""

    items: list[WorkOrder]
    count: int


@router.post(
    "", response_model=WorkOrder, status_code=201, responses={404: {"description": "No such alert"}}
)
async def create(body: WorkOrderIn, who: Operator, cases: CaseRepoDep) -> WorkOrder:
    """Open a work order for one or several alerts, optionally for a named crew."""
    try:
        return await cases.create_work_order(
            body.all_alert_ids(), who.name, body.instructions, body.assignee
        )
    except AlertNotFoundError as exc:
        raise HTTPException(status_code=404, detail=f"no alert {exc}") from None


@router.get("", response_model=WorkOrderList)
async def list_orders(
    who: Reader,
    cases: CaseRepoDep,
    status: WorkOrderStatus | None = None,
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    alert_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> WorkOrderList:
    """List work orders; a crew member sees only the ones assigned to them."""
    if who.role is Role.CREW:
        assignee = who.name
    items = await cases.work_orders(
        alert_id=alert_id, status=status, assignee=assignee, limit=limit
    )
    return WorkOrderList(items=items, count=len(items))


@router.patch(
    "/{work_order_id}",
    response_model=WorkOrder,
    responses={
        404: {"description": "No such work order"},
        409: {"description": "The work order is closed"},
    },
)
async def change(
    work_order_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: WorkOrderChange,
    who: Reader,
    cases: CaseRepoDep,
) -> WorkOrder:
    """Change status, crew, checklist or outcome: operators any order, crews their own open ones."""
    if who.role is Role.VIEWER:
        raise HTTPException(status_code=403, detail="viewers may not change work orders")
    if who.role is Role.CREW:
        own = await cases.work_orders(assignee=who.name, limit=10_000)
        order = next((o for o in own if o.id == work_order_id), None)
        if order is None:
            raise HTTPException(status_code=403, detail="not your work order")
        if body.assignee is not None:
            raise HTTPException(status_code=403, detail="crews may not reassign work orders")
        if order.status in CLOSED:
            raise HTTPException(status_code=409, detail=f"work order is {order.status.value}")
        if body.status is not None and body.status not in CREW_STATUSES:
            raise HTTPException(
                status_code=403, detail=f"crews may not set status {body.status.value}"
            )
    try:
        return await cases.update_work_order(
            work_order_id,
            who.name,
            status=body.status,
            assignee=body.assignee,
            outcome=body.outcome,
            note=body.note,
            outcome_method=body.outcome_method,
            recovered_kwh=body.recovered_kwh,
            checklist=body.checklist,
        )
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no work order {work_order_id}") from None
