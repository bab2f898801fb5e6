"""Parse the timestamps users and files give: RFC 3339 or Unix epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(text: str) -> float:
    """Return epoch seconds from RFC 3339 (Z or offset; naive means UTC) or epoch text."""
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 time or epoch seconds: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
