"""Time as meterguard writes it: RFC 3339 in UTC with a Z, from epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """Render epoch seconds as RFC 3339 UTC, whole seconds unless there is a fraction."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if ts % 1 else "seconds")
    return text.replace("+00:00", "Z")
