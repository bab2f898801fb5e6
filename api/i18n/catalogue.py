"""The message catalogues (gettext .po files read with Babel) and lookups in them."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from babel.messages.pofile import read_po

#: Where the catalogues live: <dir>/<locale>/LC_MESSAGES/<DOMAIN>.po.
LOCALES_DIR = Path(__file__).parent.parent / "locales"
DOMAIN = "meterguard"
#: The languages the pages speak (BCP 47 tags) ...
LanguageCode = Literal["en", "zh-CN"]
#: ... each named in itself, for the switch.
LANGUAGES: dict[LanguageCode, str] = {"en": "English", "zh-CN": "简体中文"}
DEFAULT_LANGUAGE = "en"

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def po_path(language: str) -> Path:
    """Return the .po file of a language (`zh-CN` lives under the locale `zh_CN`)."""
    return LOCALES_DIR / language.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def messages(language: str) -> Mapping[str, str]:
    """Return a language's messages, msgid to text; an untranslated one reads as its msgid.

    The .po files are read as they are committed, so no compile step can be forgotten;
    fuzzy entries (a translation not yet checked) are left out.
    """
    with po_path(language).open("rb") as po:
        catalogue = read_po(po, locale=language.replace("-", "_"))
    out: dict[str, str] = {}
    for message in catalogue:
        if isinstance(message.id, str) and message.id and not message.fuzzy:
            text = message.string if isinstance(message.string, str) else ""
            out[message.id] = text or message.id
    return out


def translate(language: str, msgid: str, **params: object) -> str:
    """Return a message in a language with its {placeholders} filled from params."""
    text = messages(language).get(msgid, msgid)
    return _PLACEHOLDER.sub(lambda m: str(params.get(m.group(1), m.group(0))), text)
