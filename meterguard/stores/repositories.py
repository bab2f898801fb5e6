"""What the engine, the alert service and the API ask of the alert database, per repository."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Protocol

from meterguard.model import Alert, AlertEvent, AlertKind
from meterguard.stores.records import (
    Acknowledgement,
    AlertListing,
    AlertQuery,
    AlertSort,
    Assignment,
    AuditEntry,
    Checklist,
    Comment,
    NewPhoto,
    Outcome,
    Photo,
    User,
    WorkOrder,
    WorkOrderStatus,
)


class AlertRepository(Protocol):
    """Alerts and their history: the engine's events, the manual clear, lists and counts."""

    async def apply(self, event: AlertEvent) -> bool:
        """Record an open, update or clear event; False when it changed nothing."""

    async def clear(self, alert_id: str, user: str, reason: str) -> Alert:
        """Clear an active alert by hand (AlertAlreadyClearedError if it has ended)."""

    async def list(
        self,
        *,
        active: bool | None = None,
        meter: str | None = None,
        kind: AlertKind | None = None,
        order: AlertSort = "start",
        limit: int = 100,
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

    async def history(self, alert_id: str) -> builtins.list[dict[str, Any]]:
        """Return the open/update/clear events of an alert, oldest first."""

    async def alerts_by_kind(self) -> dict[str, int]:
        """Count the alerts raised per kind."""

    async def open_by_kind(self) -> dict[str, tuple[int, float]]:
        """Return per kind the active alerts and their summed estimated kWh lost."""


class CaseRepository(Protocol):
    """Case work on alerts: acknowledgements, assignments, comments, work orders, audit."""

    async def acknowledge(self, alert_id: str, user: str, note: str = "") -> Acknowledgement:
        """Record that a user acknowledged an alert (AlertNotFoundError if none)."""

    async def assign(self, alert_id: str, assignee: str, assigned_by: str) -> Assignment:
        """Hand an alert to someone (AlertNotFoundError if none)."""

    async def comment(self, alert_id: str, author: str, text: str) -> Comment:
        """Add a comment to an alert (AlertNotFoundError if none)."""

    async def comments(self, alert_id: str) -> list[Comment]:
        """Return an alert's comments, oldest first."""

    async def acknowledgements(self, alert_id: str) -> list[Acknowledgement]:
        """Return an alert's acknowledgements, oldest first."""

    async def assignments(self, alert_id: str) -> list[Assignment]:
        """Return an alert's assignments, oldest first."""

    async def create_work_order(
        self,
        alert_ids: Sequence[str],
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
        """Move along, reassign, fill in or close a work order (KeyError if none)."""

    async def work_orders(
        self,
        *,
        alert_id: str | None = None,
        status: WorkOrderStatus | None = None,
        assignee: str | None = None,
        limit: int = 100,
    ) -> list[WorkOrder]:
        """Return work orders, newest first."""

    async def work_order(self, work_order_id: int) -> WorkOrder | None:
        """Return one work order with the alerts it covers (None if there is none)."""

    async def outcomes_by_kind(self) -> dict[str, dict[str, int]]:
        """Count the work orders' outcomes per alert kind (the detectors' feedback)."""

    async def audit(self, *, alert_id: str, limit: int = 100) -> list[AuditEntry]:
        """Return an alert's audit entries, newest first."""

    async def record(self, alert_id: str, actor: str, action: str, detail: dict[str, Any]) -> None:
        """Write what someone did with a case that changes no record (an export) to the audit."""


class UserRepository(Protocol):
    """Users, passwords and tokens: who may ask the API what."""

    async def create_user(
        self,
        name: str,
        role: str = "operator",
        *,
        created_by: str = "cli",
        password: str | None = None,
    ) -> tuple[User, str]:
        """Create a user and return it with a new API token; `created_by` is audited."""

    async def login(self, name: str, password: str, ttl_s: float) -> tuple[User, str, float] | None:
        """Check a password; return the user, a new token and its expiry, or None."""

    async def user_for_token(self, token: str) -> User | None:
        """Return the user of an active, unexpired token."""

    async def revoke_token(self, token: str) -> bool:
        """Revoke a token; True if it was active."""

    async def set_language(self, name: str, language: str | None) -> None:
        """Store the language a user chose for the pages (None: none); KeyError: no user."""


class PhotoRepository(Protocol):
    """Records of the photos crews took on site (the bytes are in the photo store)."""

    async def add(self, photo: NewPhoto, *, client_key: str | None = None) -> Photo:
        """Record a photo (once per client key) and note it in the alert's audit trail."""

    async def get(self, photo_id: int) -> Photo | None:
        """Return one photo's record (None if there is none)."""

    async def of_alert(self, alert_id: str) -> list[Photo]:
        """Return the photos documenting an alert, oldest first."""

    async def of_work_order(self, work_order_id: int) -> list[Photo]:
        """Return the photos taken for a work order, oldest first."""
