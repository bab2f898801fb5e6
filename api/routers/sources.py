"""Collector sources: each one's own counters, meters and (for operators) dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import OPERATORS, Reader
from api.deps import StatusDep
from meterguard.status import DeadLetterView, SourceEntry, StatusBoard
from meterguard.timefmt import rfc3339

router = APIRouter(prefix="/api", tags=["sources"])

#: Bytes of a dead letter's payload shown; enough to recognise it, never a whole dump.
PREVIEW_BYTES = 200


class DeadLetterOut(BaseModel):
    """A payload the source could not use."""

    at: str = Field(description="When it arrived (RFC 3339, UTC).")
    topic: str = Field(description="Where it came from (the MQTT topic).")
    reason: str = Field(
        description="Why it could not be used: the decoder's reason (e.g. `not JSON: ...`, "
        "`ts missing ...`), `unknown meter '<id>'`, or `decoder failed: <error>`."
    )
    payload: str = Field(
        description=f"The first {PREVIEW_BYTES} bytes as UTF-8 (undecodable bytes as U+FFFD)."
    )


class SourceOut(BaseModel):
    """One source: its kind, its own counters and its meters."""

    name: str = Field(description="The source's name in the config.")
    kind: str = Field(description="modbus, mqtt or dlms.")
    state: str = Field(
        description="starting (not run yet, or connecting), running, unreachable (its "
        "broker or gateway cannot be reached), failed (it raised; restarted after a "
        "backoff) or stopped. unreachable and failed make /readyz degraded (503)."
    )
    state_reason: str | None = Field(
        description="Why the source is unreachable or failed; null otherwise."
    )
    restarts: int = Field(description="Restarts after a failure since the service started.")
    last_error: str | None = Field(description="The last failure that stopped the source.")
    last_error_at: str | None = Field(description="When it failed last (RFC 3339, UTC).")
    counters: dict[str, int] = Field(
        description="The source's own counts by event since start. Every source counts "
        "readings and its failed reads by kind, in the same words as each meter's "
        "`collector.failures` and /metrics: timeout, unreachable (refused, reset, lost), "
        "device_exception (the device's exception answer), gateway (Modbus exception 10 or "
        "11: the device behind the gateway did not answer), malformed (an answer or payload "
        "not as its protocol or format says), decode_error (the decoder failed on it), silent "
        "(a publishing meter went quiet). Besides: Modbus requests, backoffs and "
        "connect_failures; MQTT received, connects, connect_failures, inbox_full, "
        "unknown_meter (a meter not in the fleet) and unrouted (a topic no template "
        "matches); malformed, decode_error and unknown_meter payloads are kept as dead "
        "letters. DLMS frames, associations and events."
    )
    meters_polled: int = Field(description="Meters this source has reported on.")
    meters_online: int = Field(description="Of those, meters whose latest read succeeded.")
    dead_letters_kept: int | None = Field(
        description="Unusable payloads kept for inspection; null for sources that keep none."
    )
    dead_letters: list[DeadLetterOut] | None = Field(
        description="The kept payloads, newest first, at most `limit`; null for viewers and "
        "crews (payloads may carry customer data) and for sources that keep none."
    )


class SourceList(BaseModel):
    """Every registered source, by name."""

    items: list[SourceOut]
    count: int


def _letter(letter: DeadLetterView) -> DeadLetterOut:
    return DeadLetterOut(
        at=rfc3339(letter.at),
        topic=letter.topic,
        reason=letter.reason,
        payload=letter.payload[:PREVIEW_BYTES].decode("utf-8", errors="replace"),
    )


def _out(board: StatusBoard, entry: SourceEntry, letters_shown: int | None) -> SourceOut:
    meters = board.summary(entry.name)
    letters = None
    if entry.dead_letters is not None and letters_shown is not None:
        newest = entry.letters()[::-1][:letters_shown]
        letters = [_letter(letter) for letter in newest]
    health = entry.health
    return SourceOut(
        name=entry.name,
        kind=entry.kind,
        state=health.state,
        state_reason=health.reason,
        restarts=health.restarts,
        last_error=health.last_error,
        last_error_at=None if health.last_error_at is None else rfc3339(health.last_error_at),
        counters=entry.counts(),
        meters_polled=meters["polled"],
        meters_online=meters["online"],
        dead_letters_kept=None if entry.dead_letters is None else len(entry.dead_letters),
        dead_letters=letters,
    )


@router.get("/sources", response_model=SourceList)
async def list_sources(
    who: Reader,
    status: StatusDep,
    limit: Annotated[
        int, Query(ge=1, le=500, description="Dead letters per source at most, newest first.")
    ] = 50,
) -> SourceList:
    """List the collector sources with their own counters and meters.

    The counters are the source's own (the same figures as `meterguard_source_events_total`
    in /metrics): what no single meter shows, such as MQTT payloads that could not be
    decoded and so belong to no meter. Operators and admins also get the dead letters
    (the payloads kept with their reason); for other roles the field is null.
    """
    shown = limit if who.role in OPERATORS else None
    items = [_out(status, entry, shown) for entry in status.sources()]
    return SourceList(items=items, count=len(items))
