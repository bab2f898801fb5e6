"""Work orders: created from alerts by operators, worked by field crews."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from api.auth import Operator, Reader
from api.deps import RuntimeDep
from meterguard.errors import AlertNotFoundError
from meterguard.roles import Role
from meterguard.stores.records import Outcome, WorkOrder, WorkOrderStatus

router = APIRouter(prefix="/api/work-orders", tags=["work orders"])

#: A closed order is history: its outcome is what rates the detectors.
CLOSED = frozenset({WorkOrderStatus.DONE, WorkOrderStatus.CANCELLED})
#: What a crew may set on its own open order (cancelling or reopening is the office's).
CREW_STATUSES = frozenset({WorkOrderStatus.DISPATCHED, WorkOrderStatus.DONE})


class WorkOrderIn(BaseModel):
    """A new investigation."""

    alert_id: str = Field(min_length=1, max_length=200)
    instructions: str = Field(default="", max_length=5000)
    assignee: str | None = Field(default=None, min_length=1, max_length=100)


class WorkOrderChange(BaseModel):
    """A change to a work order; the outcome closes it."""

    status: WorkOrderStatus | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=100)
    outcome: Outcome | None = None
    note: str = Field(default="", max_length=5000)


class WorkOrderList(BaseModel):
    """Work orders, newest first."""

    items: list[WorkOrder]
    count: int


@router.post(
    "", response_model=WorkOrder, status_code=201, responses={404: {"description": "No such alert"}}
)
async def create(body: WorkOrderIn, who: Operator, runtime: RuntimeDep) -> WorkOrder:
    """Open a work order for an alert, optionally for a named crew."""
    try:
        return await runtime.alerts.create_work_order(
            body.alert_id, who.name, body.instructions, body.assignee
        )
    except AlertNotFoundError:
        raise HTTPException(status_code=404, detail=f"no alert {body.alert_id!r}") from None


@router.get("", response_model=WorkOrderList)
async def list_orders(
    who: Reader,
    runtime: RuntimeDep,
    status: WorkOrderStatus | None = None,
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    alert_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> WorkOrderList:
    """List work orders; a crew member sees only the ones assigned to them."""
    if who.role is Role.CREW:
        assignee = who.name
    items = await runtime.alerts.work_orders(
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
    runtime: RuntimeDep,
) -> WorkOrder:
    """Change status, crew or outcome: operators any order, a crew member only their own."""
    if who.role is Role.VIEWER:
        raise HTTPException(status_code=403, detail="viewers may not change work orders")
    if who.role is Role.CREW:
        own = await runtime.alerts.work_orders(assignee=who.name, limit=10_000)
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
        return await runtime.alerts.update_work_order(
            work_order_id,
            who.name,
            status=body.status,
            assignee=body.assignee,
            outcome=body.outcome,
            note=body.note,
        )
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no work order {work_order_id}") from None
