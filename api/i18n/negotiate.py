"""Which language a reader gets: their setting, else Accept-Language, else English."""

from __future__ import annotations

from api.i18n.catalogue import DEFAULT_LANGUAGE, LANGUAGES


def supported(tag: str | None) -> str | None:
    """Return the language of ours a BCP 47 tag asks for (zh, zh-CN, zh-Hans: zh-CN), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    if primary == "zh":
        return "zh-CN"
    if primary in LANGUAGES:
        return primary
    return None


def accepted(header: str | None) -> list[str]:
    """Return the tags of an Accept-Language header, most wanted first (q=0 left out)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(setting: str | None, accept_language: str | None) -> str:
    """Return the reader's language: their setting, else Accept-Language, else English."""
    chosen = supported(setting)
    if chosen is not None:
        return chosen
    for tag in accepted(accept_language):
        chosen = supported(tag)
        if chosen is not None:
            return chosen
    return DEFAULT_LANGUAGE
