"""Tips: reports of suspected theft from people, entered by an operator, followed as cases.

A tip names the meter it concerns (found by customer or address beforehand on the
meters page or `GET /api/meters?q=`); it opens an alert of kind `tip` on the board, which
becomes a work order and gets its outcome like any detector's alert, so the statistics
judge the channel beside the detectors. A second tip on a meter whose tip is still open
joins that case as a comment instead of opening another.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Operator
from api.deps import AlertRepoDep, AlertServiceDep, CaseRepoDep, RegistryDep
from api.i18n.reader import ReaderLanguage
from api.schemas import AlertOut
from meterguard.model import Alert, AlertKind, Severity, SummaryMessage, TipChannel

router = APIRouter(prefix="/api", tags=["cases"])

#: Characters of the reporter's text that the summary quotes.
SUMMARY_QUOTE = 80
#: Text with a character that is neither white space nor NUL.
NOT_BLANK = "^[^\\x00]*[^\\x00\\x09-\\x0d\\x20][^\\x00]*$"


class TipIn(BaseModel):
    """A report of suspected theft, as the operator took it."""

    model_config = ConfigDict(extra="forbid")

    channel: TipChannel = Field(description="Where it came in.")
    meter: str = Field(min_length=1, max_length=100, description="The meter it concerns.")
    text: str = Field(
        min_length=1, max_length=5000, pattern=NOT_BLANK, description="What the reporter said."
    )
    customer: str | None = Field(default=None, max_length=200, description="Customer named.")
    address: str | None = Field(default=None, max_length=500, description="Address named.")
    reporter: str | None = Field(
        default=None,
        max_length=200,
        description="How to reach the reporter again (kept in the case; empty: anonymous).",
    )
    severity: Severity = Field(default=Severity.MINOR, description="How urgent it looks.")


class TipOut(BaseModel):
    """The tip's case, and whether the tip opened it or joined one already open."""

    alert: AlertOut
    new: bool


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SUMMARY_QUOTE else flat[: SUMMARY_QUOTE - 1] + "…"


@router.post(
    "/tips",
    response_model=TipOut,
    status_code=201,
    responses={
        200: {"description": "A tip on this meter is open already: added to it as a comment"},
        404: {"description": "No such meter in the fleet"},
        409: {"description": "The meter's open tip changed while this one was entered"},
        422: {"description": "A field out of its bounds"},
    },
)
async def enter_tip(
    tip: TipIn,
    who: Operator,
    language: ReaderLanguage,
    response: Response,
    service: AlertServiceDep,
    alerts: AlertRepoDep,
    cases: CaseRepoDep,
    registry: RegistryDep,
) -> TipOut:
    """Open a case of kind `tip` for a reported meter (or add to its open one)."""
    meter = registry.get(tip.meter)
    if meter is None:
        raise HTTPException(status_code=404, detail=f"no meter {tip.meter!r} in the fleet")
    now = time.time()
    detail = tip.model_dump(mode="json", exclude={"severity"}, exclude_none=True)
    quote = _quote(tip.text)
    alert = Alert(
        id=f"{tip.meter}-tip-{int(now)}-{uuid.uuid4().hex[:6]}",
        meter=tip.meter,
        kind=AlertKind.TIP,
        severity=tip.severity,
        start=now,
        raised=now,
        # A person's report: neither confirmed nor unlikely until a crew has looked.
        confidence=0.5,
        summary=f"tip by {tip.channel.replace('_', ' ')}: {quote}",
        summary_message=SummaryMessage(
            key="summary.tip", params={"channel": tip.channel, "text": quote}
        ),
        evidence={**detail, "entered_by": who.name},
    )
    # Twice at most: the open tip the first attempt met may be cleared before it is read.
    for _ in range(2):
        if await service.open_by_hand(alert, who.name, detail):
            opened = await alerts.listing(alert.id)
            return TipOut(alert=AlertOut.of(opened, meter, language), new=True)
        found = await alerts.list(meter=tip.meter, kind=AlertKind.TIP, active=True, limit=1)
        if found:
            break
    else:
        raise HTTPException(status_code=409, detail="the meter's open tip changed; send again")
    open_tip = found[0]
    who_to_ask = f" ({tip.reporter})" if tip.reporter else ""
    await cases.comment(
        open_tip.id, who.name, f"another tip by {tip.channel}{who_to_ask}: {tip.text}"
    )
    response.status_code = 200
    listing = await alerts.listing(open_tip.id)
    return TipOut(alert=AlertOut.of(listing, meter, language), new=False)
