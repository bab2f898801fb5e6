"""The one path an alert change takes out of the process: persist, publish, notify, forget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from meterguard.broadcast import AlertBroadcaster, NumberedEvent, ResyncNeeded
from meterguard.model import Alert, AlertEvent, AlertEventType
from meterguard.stores.records import Acknowledgement, Assignment, CaseState
from meterguard.stores.repositories import AlertRepository, CaseRepository

if TYPE_CHECKING:
    from meterguard.runtime import Counters

log = logging.getLogger(__name__)


class AlertNotifier(Protocol):
    """Takes an alert event for delivery elsewhere (meterguard/notifiers.py); never waits."""

    def offer(self, event: AlertEvent) -> None:
        """Queue the event for delivery."""


class ActiveAlerts(Protocol):
    """What keeps open incidents in memory (the detector engine)."""

    def forget(self, alert: Alert) -> bool:
        """Drop the incident of an alert cleared by hand; return whether it was held."""


class AlertService:
    """Every alert event and case change leaves through here, in one order.

    1. persist: the alert database takes it, or the call raises and nothing else happens
       (the engine pipeline retries an engine event until it is taken; an API request
       answers with the error, 503 for an unavailable store);
    2. publish: the live stream's ring (in memory; it does not fail);
    3. notify: each notifier is offered the alert event; one that raises is logged and
       counted (`notify_failures`) and keeps neither the stream nor the others from it;
    4. forget: after a manual clear, the engine drops the incident, so a condition that
       still holds starts a new one.

    An engine event the store calls stale or refuses goes no further than step 1. Case
    changes (acknowledged, assigned) are published to the stream only: the notifiers
    carry alert events.
    """

    def __init__(
        self,
        alerts: AlertRepository,
        cases: CaseRepository,
        broadcaster: AlertBroadcaster,
        counters: Counters,
    ) -> None:
        self._alerts = alerts
        self._cases = cases
        self._broadcaster = broadcaster
        self._counters = counters
        self._notifiers: list[AlertNotifier] = []
        self._active: ActiveAlerts | None = None
        # Held from reading an alert's case fields to publishing them, so the last case
        # event of an alert always carries its latest state.
        self._case_lock = asyncio.Lock()

    def attach(self, notifiers: Sequence[AlertNotifier], active: ActiveAlerts) -> None:
        """Add the notifiers and the engine of a process that runs detection."""
        self._notifiers = list(notifiers)
        self._active = active

    async def engine_event(self, event: AlertEvent) -> bool:
        """Persist an event of the detector engine, then announce it; False if not taken.

        Raises whatever the store raises, before anything is published.
        """
        if not await self._alerts.apply(event):
            # Stale (the alert was cleared by hand meanwhile) or refused: the store keeps
            # what it had, and the listeners hear nothing of it.
            return False
        self._announce(event)
        counters = self._counters
        counters.alert_events += 1
        if event.type is AlertEventType.OPEN:
            counters.alerts_opened += 1
            alert = event.alert
            log.info("alert opened: %s %s - %s", alert.meter, alert.kind, alert.summary)
        elif event.type is AlertEventType.CLEAR:
            counters.alerts_cleared += 1
        return True

    async def open_by_hand(self, alert: Alert, user: str, detail: dict[str, Any]) -> bool:
        """Open an alert a person reported (a tip), recording who; False if one is open.

        The meter's open alert of the same kind stays as it is (the database keeps one per
        meter and kind); nothing is published then.
        """
        event = AlertEvent(type=AlertEventType.OPEN, ts=alert.start, alert=alert)
        if not await self._alerts.apply(event):
            return False
        await self._cases.record(alert.id, user, f"{alert.kind.value}_open", detail)
        self._announce(event)
        self._counters.alert_events += 1
        self._counters.alerts_opened += 1
        log.info("alert opened by %s: %s %s - %s", user, alert.meter, alert.kind, alert.summary)
        return True

    async def clear(self, alert_id: str, user: str, reason: str) -> Alert:
        """Clear an active alert by hand, announce the clear and make the engine forget it.

        AlertNotFoundError or AlertAlreadyClearedError from the store, before anything else.
        """
        alert = await self._alerts.clear(alert_id, user, reason)
        if alert.end is None:
            raise ValueError(f"alert {alert.id} has not ended")
        self._counters.alerts_cleared_manually += 1
        self._announce(AlertEvent(type=AlertEventType.CLEAR, ts=alert.end, alert=alert))
        if self._active is not None:
            try:
                self._active.forget(alert)
            except Exception:  # the clear stands; the engine's later events are stale
                log.exception("the engine could not forget alert %s cleared by hand", alert.id)
        return alert

    async def acknowledge(self, alert_id: str, user: str, note: str = "") -> Acknowledgement:
        """Record an acknowledgement, then publish the alert's case fields."""
        done = await self._cases.acknowledge(alert_id, user, note)
        await self._publish_case(alert_id)
        return done

    async def assign(self, alert_id: str, assignee: str, assigned_by: str) -> Assignment:
        """Record a hand-over, then publish the alert's case fields."""
        done = await self._cases.assign(alert_id, assignee, assigned_by)
        await self._publish_case(alert_id)
        return done

    def listen(
        self, last_event_id: str | None = None
    ) -> AsyncIterator[NumberedEvent | ResyncNeeded]:
        """Yield what was published after last_event_id (or from now on), forever."""
        return self._broadcaster.listen(last_event_id)

    def _announce(self, event: AlertEvent) -> None:
        """Publish a stored alert event, then offer it to every notifier."""
        self._broadcaster.publish(event)
        for notifier in self._notifiers:
            try:
                notifier.offer(event)
            except Exception:  # one broken notifier must not silence the others
                self._counters.notify_failures += 1
                log.exception("a notifier refused %s %s", event.type.value, event.alert.id)

    async def _publish_case(self, alert_id: str) -> None:
        """Send the alert's case fields to the live stream, so every board shows the change."""
        # Read and publish under one lock: a snapshot read before another request's change
        # is never published after that request's newer one.
        async with self._case_lock:
            listing = await self._alerts.listing(alert_id)
            self._broadcaster.publish(
                CaseState(
                    alert_id=alert_id,
                    acknowledged_by=listing.acknowledged_by,
                    acknowledged_at=listing.acknowledged_at,
                    assignee=listing.assignee,
                )
            )
