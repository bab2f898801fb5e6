"""Prometheus metrics and readiness: what a monitoring system scrapes and probes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from api.deps import AlertRepoDep, RuntimeDep, SeriesDep, StatusDep
from api.login_guard import LoginGuard, guard_of
from api.readiness import check_readiness
from meterguard.runtime import Runtime

router = APIRouter(tags=["health"])


class RuntimeCollector(Collector):
    """Reads the runtime's counters at scrape time, so nothing is counted twice."""

    def __init__(self, runtime: Runtime, login_guard: LoginGuard) -> None:
        self.runtime = runtime
        self.login_guard = login_guard

    def collect(self) -> Iterator[Metric]:
        """Yield every metric as it stands now."""
        c = self.runtime.counters
        yield CounterMetricFamily(
            "meterguard_readings", "Readings taken in by the engine.", value=c.readings_in
        )
        yield CounterMetricFamily(
            "meterguard_batches", "Batches taken in by the engine.", value=c.batches_in
        )
        yield CounterMetricFamily(
            "meterguard_store_errors",
            "Store writes refused (each retried until taken).",
            value=c.store_errors,
        )
        yield CounterMetricFamily(
            "meterguard_login_failures",
            "Failed logins (wrong name or password).",
            value=self.login_guard.failures_total,
        )
        yield CounterMetricFamily(
            "meterguard_login_refused",
            "Logins refused with 429, unchecked, after too many failures for the name or address.",
            value=self.login_guard.refused_total,
        )
        events = CounterMetricFamily(
            "meterguard_alert_events", "Alert events by type.", labels=["type"]
        )
        events.add_metric(["open"], c.alerts_opened)
        events.add_metric(["clear"], c.alerts_cleared)
        events.add_metric(["update"], c.alert_events - c.alerts_opened - c.alerts_cleared)
        yield events
        yield CounterMetricFamily(
            "meterguard_alerts_cleared_by_hand",
            "Alerts operators cleared by hand, with a reason.",
            value=c.alerts_cleared_manually,
        )
        yield CounterMetricFamily(
            "meterguard_notify_failures",
            "Alert events a notifier refused to take (the stream and the others still had them).",
            value=c.notify_failures,
        )
        photos = CounterMetricFamily(
            "meterguard_photos_refused",
            "Photo uploads refused, by reason (too_large, not_an_image, unsupported_type,"
            " type_mismatch).",
            labels=["reason"],
        )
        for reason, count in sorted(self.runtime.photos_refused.items()):
            photos.add_metric([reason], count)
        yield photos
        polls: dict[str, int] = defaultdict(int)
        errors: dict[str, int] = defaultdict(int)
        online: dict[str, int] = defaultdict(int)
        for status in self.runtime.status.all():
            polls[status.source] += status.readings
            errors[status.source] += status.errors
            online[status.source] += int(status.online)
        per_source: list[tuple[CounterMetricFamily | GaugeMetricFamily, dict[str, int]]] = [
            (
                CounterMetricFamily(
                    "meterguard_source_readings",
                    "Successful meter reads per source.",
                    labels=["source"],
                ),
                polls,
            ),
            (
                CounterMetricFamily(
                    "meterguard_source_errors",
                    "Failed reads (timeouts, exceptions, decode errors) per source.",
                    labels=["source"],
                ),
                errors,
            ),
            (
                GaugeMetricFamily(
                    "meterguard_source_meters_online",
                    "Meters whose last read succeeded, per source.",
                    labels=["source"],
                ),
                online,
            ),
        ]
        for family, values in per_source:
            for source, value in sorted(values.items()):
                family.add_metric([source], value)
            yield family
        yield from self._source_events()
        for name, read in sorted(self.runtime.gauges.items()):
            yield GaugeMetricFamily(f"meterguard_{name}", f"Live figure {name}.", value=read())
        yield GaugeMetricFamily(
            "meterguard_stream_listeners",
            "Open live-stream connections.",
            value=self.runtime.broadcaster.listeners,
        )

    def _source_events(self) -> Iterator[Metric]:
        """Each source's own counters, and how many dead letters it keeps."""
        sources = self.runtime.status.sources()
        events = CounterMetricFamily(
            "meterguard_source_events",
            "A source's own counts by event (requests, timeouts, malformed payloads, ...).",
            labels=["source", "event"],
        )
        kept = GaugeMetricFamily(
            "meterguard_source_dead_letters",
            "Unusable payloads a source keeps for inspection (GET /api/sources).",
            labels=["source"],
        )
        for entry in sources:
            for event, count in sorted(entry.counts().items()):
                events.add_metric([entry.name, event], count)
            if entry.dead_letters is not None:
                kept.add_metric([entry.name], len(entry.dead_letters))
        yield events
        yield kept
        restarts = CounterMetricFamily(
            "meterguard_source_restarts",
            "Restarts of a source after it failed (GET /api/sources has its last error).",
            labels=["source"],
        )
        degraded = GaugeMetricFamily(
            "meterguard_source_degraded",
            "1 while a source cannot deliver: failed and waiting for its restart, or its "
            "broker or gateway out of reach (GET /readyz says which).",
            labels=["source"],
        )
        for name, health in self.runtime.status.healths().items():
            restarts.add_metric([name], health.restarts)
            degraded.add_metric([name], int(health.degraded))
        yield restarts
        yield degraded
        checks = self.runtime.validation
        blanked = CounterMetricFamily(
            "meterguard_values_out_of_range",
            "Values beyond physical bounds, taken as not measured, by quantity.",
            labels=["quantity"],
        )
        for quantity, count in sorted(checks.values_out_of_range.items()):
            blanked.add_metric([quantity], count)
        refused = CounterMetricFamily(
            "meterguard_readings_refused",
            "Readings refused for their time (clock_ahead, clock_reset, time_not_finite).",
            labels=["reason"],
        )
        for reason, count in sorted(checks.readings_refused.items()):
            refused.add_metric([reason], count)
        yield blanked
        yield refused


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus text exposition of meterguard's counters and gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(runtime, guard_of(request.app, runtime.settings.api)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "Not ready: a store does not answer (`status` unavailable), or a "
            "source cannot deliver (`status` degraded: failed and restarting, or its broker or "
            "gateway out of reach); the body says which"
        }
    },
)
async def readyz(
    alerts: AlertRepoDep, series: SeriesDep, status: StatusDep, response: Response
) -> dict[str, object]:
    """Readiness: both stores answer and every source delivers (503 otherwise).

    `status` is `ok`, `degraded` (the stores answer, a source does not deliver) or
    `unavailable` (a store does not answer); `sources` gives each source's state and,
    when degraded, why.
    """
    found = await check_readiness(alerts, series, status)
    if not found.ready:
        response.status_code = 503
    checks = {
        name: "ok" if error is None else f"error: {error}"
        for name, error in found.store_errors.items()
    }
    sources = {n: {"state": h.state, "reason": h.reason} for n, h in found.sources.items()}
    return {
        "ready": found.ready,
        "status": found.status,
        "checks": checks,
        "sources": sources,
        "collector": status.summary(),
        "check_ms": found.check_ms,
    }
