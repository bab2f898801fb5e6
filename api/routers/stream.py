"""The live stream: alert open/update/clear events as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.auth import Reader
from api.deps import AlertServiceDep, RegistryDep
from api.i18n.reader import ReaderLanguage
from api.schemas import AlertOut, CaseOutline
from meterguard.broadcast import ResyncNeeded
from meterguard.stores.records import CaseState

router = APIRouter(tags=["stream"])


@router.get("/api/stream", response_class=EventSourceResponse)
async def stream(
    who: Reader,
    language: ReaderLanguage,
    alerting: AlertServiceDep,
    registry: RegistryDep,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
    after: Annotated[
        str | None, Query(max_length=100, description="Resume after this event id.")
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Stream alert events: `alert-open`, `alert-update` and `alert-clear` carry the alert.

    A `case` event carries an alert's new case fields (acknowledged, assigned). A `resync`
    event asks the client to reload the list: the events it missed are gone. (The alert
    events are not named `open`: EventSource dispatches an `open` event of its own on every
    connection, and a listener for alerts would receive it too.)
    """
    async for item in alerting.listen(last_event_id or after):
        if isinstance(item, ResyncNeeded):
            yield ServerSentEvent(event="resync", data={"reason": "reload the alert list"})
            continue
        event = item.event
        if isinstance(event, CaseState):
            yield ServerSentEvent(
                id=item.id, event="case", data=CaseOutline.of(event).model_dump(mode="json")
            )
            continue
        alert = AlertOut.of(event.alert, registry.get(event.alert.meter), language)
        # Engine events do not know the case fields: they are left out, not sent as null.
        data = alert.model_dump(mode="json", exclude_unset=True)
        if data["raised"] is None:
            # Nor is a `raised` the event does not know: the client keeps the one it holds.
            del data["raised"]
        yield ServerSentEvent(id=item.id, event=f"alert-{event.type.value}", data=data)
