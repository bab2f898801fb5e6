"""Time as meterguard writes it: RFC 3339 in UTC with a Z, from epoch seconds; durations."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: float) -> str:
    """Render epoch seconds as RFC 3339 UTC, whole seconds unless there is a fraction."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if ts % 1 else "seconds")
    return text.replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """Render a duration the way an operator reads it: 42 s, 14 min, 3.5 h, 2.1 d."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
