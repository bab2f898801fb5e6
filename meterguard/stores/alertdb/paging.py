"""Alert list queries: the filters, the sort orders and the keyset cursors that page them."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from meterguard.model import Severity
from meterguard.stores.alertdb import tables as t
from meterguard.stores.records import AlertQuery, AlertSort

#: Severity as a number that sorts: the worse, the higher.
SEVERITY_RANK = {
    Severity.WARNING.value: 1,
    Severity.MINOR.value: 2,
    Severity.MAJOR.value: 3,
    Severity.CRITICAL.value: 4,
}


#: Meter filters longer than this are written into the SQL text rather than bound.
INLINE_METERS_FROM = 1000


class CursorError(ValueError):
    """A cursor that is malformed, or was made for another query."""


def severity_rank() -> sa.ColumnElement[int]:
    """Return the SQL expression of an alert's severity rank."""
    return sa.case(SEVERITY_RANK, value=t.alerts.c.severity, else_=0)


def sort_columns(sort: AlertSort) -> list[sa.ColumnElement[Any]]:
    """Return the key of a sort order, most significant first; the id breaks ties."""
    a = t.alerts
    if sort == "kwh":
        return [a.c.estimated_kwh_lost, a.c.id]
    if sort == "severity":
        # Within one severity the larger loss comes first: what an operator handles first.
        return [severity_rank(), a.c.estimated_kwh_lost, a.c.id]
    return [a.c.start, a.c.id]


def sort_values(sort: AlertSort, row: sa.RowMapping) -> tuple[Any, ...]:
    """Return a fetched row's sort key, in the order of sort_columns."""
    if sort == "kwh":
        return (row["estimated_kwh_lost"], row["id"])
    if sort == "severity":
        return (SEVERITY_RANK.get(row["severity"], 0), row["estimated_kwh_lost"], row["id"])
    return (row["start"], row["id"])


def _key_types(sort: AlertSort) -> tuple[type, ...]:
    if sort == "severity":
        return (int, float, str)
    return (float, str)


def where_clauses(query: AlertQuery) -> list[sa.ColumnElement[bool]]:
    """Return the WHERE conditions of a query's filters and cursor."""
    a = t.alerts
    clauses: list[sa.ColumnElement[bool]] = []
    if query.active is not None:
        clauses.append(a.c.active == query.active)
    if query.acknowledged is not None:
        acked = a.c.acknowledged_by
        clauses.append(acked.is_not(None) if query.acknowledged else acked.is_(None))
    if query.assignee is not None:
        clauses.append(a.c.assignee == query.assignee)
    if query.kinds:
        clauses.append(a.c.kind.in_([k.value for k in query.kinds]))
    if query.severities:
        clauses.append(a.c.severity.in_([s.value for s in query.severities]))
    if query.meters is not None and len(query.meters) <= INLINE_METERS_FROM:
        clauses.append(a.c.meter.in_(query.meters))
    elif query.meters is not None:
        # Rendered inline: a customer class can hold more meters than a driver takes
        # bound parameters (32,767 on PostgreSQL). The ids come from the registry.
        meters: sa.BindParameter[list[str]] = sa.bindparam(
            "meters", list(query.meters), expanding=True, literal_execute=True
        )
        clauses.append(a.c.meter.in_(meters))
    if query.since is not None:
        clauses.append(sa.or_(a.c.end_ts.is_(None), a.c.end_ts >= query.since))
    if query.until is not None:
        clauses.append(a.c.start <= query.until)
    if query.after is not None:
        key = sa.tuple_(*sort_columns(query.sort))
        after = sa.tuple_(*(sa.literal(v) for v in query.after))
        clauses.append(key < after if query.direction == "desc" else key > after)
    return clauses


def order_by(query: AlertQuery) -> list[sa.ColumnElement[Any]]:
    """Return the ORDER BY terms of a query."""
    columns = sort_columns(query.sort)
    return [c.desc() if query.direction == "desc" else c.asc() for c in columns]


def encode_cursor(query: AlertQuery, key: Sequence[Any]) -> str:
    """Return the opaque cursor of the page after the row with sort key `key`."""
    text = json.dumps({"q": query.fingerprint(), "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(query: AlertQuery, cursor: str) -> tuple[Any, ...]:
    """Return the sort key a cursor holds; CursorError when it is not one of this query's."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("the cursor is not one this API made") from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list):
        raise CursorError("the cursor is not one this API made")
    if data.get("q") != query.fingerprint():
        raise CursorError("the cursor belongs to a list with other filters or another sort")
    types = _key_types(query.sort)
    raw = data["k"]
    if len(raw) != len(types):
        raise CursorError("the cursor is not one this API made")
    return tuple(_checked(value, want) for value, want in zip(raw, types, strict=True))


def _checked(value: Any, want: type) -> Any:
    """Return a decoded cursor value as its sort column holds it; CursorError if it cannot be."""
    if want is str and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CursorError("the cursor is not one this API made")
    if want is int:
        if isinstance(value, int) and 0 <= value <= max(SEVERITY_RANK.values()):
            return value
        raise CursorError("the cursor is not one this API made")
    number = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(number):
        raise CursorError("the cursor is not one this API made")
    return number
