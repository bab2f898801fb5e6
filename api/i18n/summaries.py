"""Alert summaries in the reader's language, from their message key and figures."""

from __future__ import annotations

import logging
from typing import Any

from api.i18n.catalogue import DEFAULT_LANGUAGE, messages, translate
from meterguard.model import Alert, SummaryMessage
from meterguard.stores.records import AlertListing
from meterguard.timefmt import format_duration

log = logging.getLogger(__name__)


def _figures(params: dict[str, Any], language: str) -> dict[str, str]:
    """Return the words a summary template fills in, written for the language."""
    phase = int(params.get("phase", 0) or 0)
    magnitude = float(params.get("magnitude", 0.0))
    amount, _, unit = format_duration(float(params.get("duration_s", 0.0))).partition(" ")
    figures = {
        "where": translate(language, f"phase.{phase}" if phase else "phase.meter"),
        "duration": translate(
            language, "duration", amount=amount, unit=translate(language, f"unit.{unit}")
        ),
        "share": f"{magnitude:.0%}",
        "kw": f"{magnitude / 1000:.2f}",
        "deg": f"{magnitude:.0f}",
        "kwh": f"{float(params.get('kwh', 0.0)):.1f}",
    }
    if "band" in params:
        figures["band"] = translate(language, f"band.{params['band']}")
    if "channel" in params:  # a tip: where it came in, and the reporter's words as said
        figures["channel"] = translate(language, f"channel.{params['channel']}")
        figures["text"] = str(params.get("text", ""))
    return figures


def render_summary(message: SummaryMessage | None, english: str, language: str) -> str:
    """Return a summary in a language; the English text where the catalogues cannot say it."""
    if message is None or message.key not in messages(language):
        return english
    try:
        return messages(language)[message.key].format(**_figures(message.params, language))
    except (KeyError, ValueError, IndexError):
        # A catalogue entry naming a figure the message lacks must not lose the alert.
        log.warning("summary %s cannot be rendered in %s", message.key, language)
        return english


def summary_text(alert: Alert | AlertListing, language: str = DEFAULT_LANGUAGE) -> str:
    """Return an alert's summary in a language."""
    return render_summary(alert.summary_message, alert.summary, language)
