"""Store protocols: where series and alerts go. Embedded SQLite implementations live here."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from meterguard.model import (
    QUANTITIES,
    Alert,
    AlertEvent,
    AlertKind,
    FloatArray,
    ReadingBatch,
    Severity,
)
from meterguard.stores.records import (
    Acknowledgement,
    AlertListing,
    AlertQuery,
    AlertSort,
    Assignment,
    AuditEntry,
    Checklist,
    Comment,
    Outcome,
    User,
    WorkOrder,
    WorkOrderStatus,
)


@dataclass(frozen=True, slots=True)
class Series:
    """A meter's quantities over a window: one timestamp column and one column per field."""

    meter: str
    ts: FloatArray
    values: dict[str, FloatArray]


def check_query(fields: Sequence[str], points: int | None) -> None:
    """Refuse a series query every store would refuse: unknown quantities, points < 1."""
    unknown = [f for f in fields if f not in QUANTITIES]
    if unknown:
        raise ValueError(f"unknown quantities: {', '.join(unknown)}")
    if points is not None and points < 1:
        raise ValueError("points must be at least 1")


class SeriesStore(Protocol):
    """Keeps the readings; the embedded SQLite store and InfluxDB both satisfy it."""

    async def write(self, batch: ReadingBatch) -> None:
        """Store every row of a batch."""

    async def query(
        self,
        meter: str,
        start: float,
        end: float,
        fields: Sequence[str],
        points: int | None = None,
    ) -> Series:
        """Return a meter's fields between start and end (epoch seconds, inclusive).

        With `points`, readings are averaged into at most that many equal time buckets
        aligned to multiples of the bucket width; each bucket is stamped with its start.
        """

    async def close(self) -> None:
        """Flush and release the store."""


class AlertStore(Protocol):
    """Keeps alerts, their history and the case work; SQLite embedded, PostgreSQL shared."""

    async def apply(self, event: AlertEvent) -> bool:
        """Record an open, update or clear event; False when it changed nothing."""

    async def get(self, alert_id: str) -> Alert:
        """Return one alert; AlertNotFoundError when there is none."""

    async def list(
        self,
        *,
        active: bool | None = None,
        meter: str | None = None,
        kind: AlertKind | None = None,
        limit: int = 100,
        severity: Severity | None = None,
        acknowledged: bool | None = None,
        assignee: str | None = None,
        since: float | None = None,
        until: float | None = None,
        order: AlertSort = "start",
        offset: int = 0,
    ) -> list[Alert]:
        """Return whole alerts filtered as asked: newest start first, or by estimated loss."""

    async def page(
        self, query: AlertQuery, limit: int
    ) -> tuple[builtins.list[AlertListing], tuple[Any, ...] | None]:
        """Return one page of a list and the sort key to continue after (None: last page)."""

    async def detail(self, alert_id: str) -> tuple[Alert, AlertListing]:
        """Return one alert whole and with its case fields (AlertNotFoundError if none)."""

    async def listing(self, alert_id: str) -> AlertListing:
        """Return one alert with its case fields (AlertNotFoundError if none)."""

    async def clear(self, alert_id: str, user: str, reason: str) -> Alert:
        """Clear an active alert by hand (AlertAlreadyClearedError if it has ended)."""

    async def history(self, alert_id: str) -> builtins.list[dict[str, Any]]:
        """Return the open/update/clear events of an alert, oldest first."""

    async def acknowledge(self, alert_id: str, user: str, note: str = "") -> Acknowledgement:
        """Record that a user acknowledged an alert (AlertNotFoundError if none)."""

    async def assign(self, alert_id: str, assignee: str, assigned_by: str) -> Assignment:
        """Hand an alert to someone."""

    async def comment(self, alert_id: str, author: str, text: str) -> Comment:
        """Add a comment to an alert."""

    async def comments(self, alert_id: str) -> builtins.list[Comment]:
        """Return an alert's comments, oldest first."""

    async def acknowledgements(self, alert_id: str) -> builtins.list[Acknowledgement]:
        """Return an alert's acknowledgements, oldest first."""

    async def assignments(self, alert_id: str) -> builtins.list[Assignment]:
        """Return an alert's assignments, oldest first."""

    async def create_work_order(
        self,
        alert_ids: str | Sequence[str],
        created_by: str,
        instructions: str,
        assignee: str | None = None,
    ) -> WorkOrder:
        """Open an investigation work order for one or several alerts."""

    async def update_work_order(
        self,
        work_order_id: int,
        by: str,
        *,
        status: WorkOrderStatus | None = None,
        assignee: str | None = None,
        outcome: Outcome | None = None,
        note: str = "",
        outcome_method: str | None = None,
        recovered_kwh: float | None = None,
        checklist: Checklist | None = None,
    ) -> WorkOrder:
        """Move along, reassign, fill in or close a work order (an outcome closes it)."""

    async def work_orders(
        self,
        *,
        alert_id: str | None = None,
        status: WorkOrderStatus | None = None,
        assignee: str | None = None,
        limit: int = 100,
    ) -> builtins.list[WorkOrder]:
        """Return work orders, newest first."""

    async def outcomes_by_kind(self) -> dict[str, dict[str, int]]:
        """Count recorded outcomes per alert kind (false-alarm feedback)."""

    async def alerts_by_kind(self) -> dict[str, int]:
        """Count the alerts raised per kind."""

    async def open_by_kind(self) -> dict[str, tuple[int, float]]:
        """Return per kind the active alerts and their summed estimated kWh lost."""

    async def audit(
        self, *, alert_id: str | None = None, limit: int = 100
    ) -> builtins.list[AuditEntry]:
        """Return audit entries, newest first."""

    async def create_user(
        self,
        name: str,
        role: str = "operator",
        *,
        created_by: str = "cli",
        password: str | None = None,
    ) -> tuple[User, str]:
        """Create a user and return it with a new API token; `created_by` is audited."""

    async def set_password(self, name: str, password: str, *, by: str = "cli") -> None:
        """Give a user a (new) password."""

    async def login(self, name: str, password: str, ttl_s: float) -> tuple[User, str, float] | None:
        """Check a password; return the user, a new token and its expiry, or None."""

    async def user_for_token(self, token: str) -> User | None:
        """Return the user of an active, unexpired token."""

    async def revoke_token(self, token: str) -> bool:
        """Revoke a token; True if it was active."""

    async def close(self) -> None:
        """Release the store."""
