"""What the catalogues must hold: the pages' texts, the scripts' messages, the codes' names.

`python -m api.i18n.extract` lists the msgids a catalogue lacks or leaves untranslated.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import get_args

from babel.messages.pofile import read_po

from api.i18n.catalogue import DEFAULT_LANGUAGE, LANGUAGES, po_path
from meterguard.model import AlertEventType, AlertKind, Severity, TipChannel
from meterguard.roles import Role
from meterguard.stores.records import CheckAnswer, Checklist, Outcome, WorkOrderStatus

STATIC_DIR = Path(__file__).parent.parent / "static"
#: Attributes of the static pages whose text people read (the pages translate them).
TRANSLATED_ATTRIBUTES = ("placeholder", "aria-label", "title")
#: Elements without an end tag: they never open a skipped stretch.
_VOID = frozenset({"input", "meta", "link", "br", "img", "hr", "source"})
_LETTER = re.compile(r"[^\W\d_]")
_CALL = re.compile(r"\bMG\.t\(")
_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')

#: Keys named by code: (group, codes); the pages show `group.code` through MG.label.
CODE_GROUPS: dict[str, tuple[str, ...]] = {
    "kind": tuple(AlertKind),
    "severity": tuple(Severity),
    "outcome": tuple(Outcome),
    "status": tuple(WorkOrderStatus),
    "next": (WorkOrderStatus.EN_ROUTE, WorkOrderStatus.ON_SITE),
    "answer": tuple(CheckAnswer),
    "check": tuple(
        name for name, f in Checklist.model_fields.items() if f.annotation is CheckAnswer
    ),
    "role": tuple(Role),
    "state": ("active", "cleared"),
    "event": tuple(AlertEventType),
    "meter_role": ("customer", "feeder"),
    "action": (
        "acknowledge",
        "assign",
        "comment",
        "clear",
        "work_order_create",
        "work_order_update",
        "user_create",
        "password_set",
        "user_rename",
        "tip_open",
        "evidence_pack",
        "evidence_report",
        "photo",
    ),
    "channel": get_args(TipChannel),
    # Summaries of alerts no detector raises (api/routers/tips.py).
    "summary": ("tip",),
    "evidence": ("onset", "at_raise", "latest", "cleared_by", "last_hold", "peak_magnitude"),
    # The words an alert summary is made of (api/i18n/summaries.py).
    "phase": ("meter", "1", "2", "3"),
    "unit": ("s", "min", "h", "d"),
    "band": ("floor", "low", "saturation", "high", "within"),
}


class _PageText(HTMLParser):
    """Collects the text people read on a static page, skipping translate="no" elements."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in TRANSLATED_ATTRIBUTES:
            value = found.get(name)
            if value and _LETTER.search(value):
                self.texts.append(value)
        skipped = tag in ("script", "style") or found.get("translate") == "no" or self._skip
        if skipped and tag not in _VOID:
            self._skip.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if text and not self._skip and _LETTER.search(text):
            self.texts.append(text)


def page_texts(path: Path) -> list[str]:
    """Return the texts of one static HTML page, in order."""
    parser = _PageText()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.texts


def _first_argument(source: str, start: int) -> str:
    """Return the source of a call's first argument, the call's parenthesis at start - 1."""
    depth = 0
    i = start
    while i < len(source):
        c = source[i]
        if c == '"':
            literal = _STRING.match(source, i)
            i = literal.end() if literal else i + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            break
        i += 1
    return source[start:i]


def script_messages(source: str) -> list[str]:
    """Return the msgids a page script asks MG.t for (each literal of its first argument)."""
    found: list[str] = []
    for call in _CALL.finditer(source):
        argument = _first_argument(source, call.end())
        found.extend(_unescape(m.group(1)) for m in _STRING.finditer(argument))
    return found


def _unescape(literal: str) -> str:
    return literal.encode().decode("unicode_escape") if "\\" in literal else literal


def code_keys() -> list[str]:
    """Return the keys of the codes the pages name (kinds, severities, outcomes...)."""
    return [f"{group}.{code}" for group, codes in CODE_GROUPS.items() for code in codes]


def used_msgids() -> set[str]:
    """Return every msgid the pages, their scripts and the API's renderer use."""
    used = set(code_keys())
    used.add("duration")
    for page in STATIC_DIR.glob("*.html"):
        used.update(page_texts(page))
    for script in STATIC_DIR.glob("*.js"):
        used.update(script_messages(script.read_text(encoding="utf-8")))
    return used


def _done(language: str) -> set[str]:
    """Return the msgids a catalogue holds ready: translated (English: any), not fuzzy."""
    with po_path(language).open("rb") as po:
        catalogue = read_po(po)
    return {
        m.id
        for m in catalogue
        if isinstance(m.id, str) and not m.fuzzy and (m.string or language == DEFAULT_LANGUAGE)
    }


def missing(language: str, used: set[str]) -> list[str]:
    """Return the msgids a catalogue lacks, leaves untranslated or fuzzy.

    The English catalogue is the reference: every other one translates all it holds (the
    alert summaries' keys among them) as well as what the pages use.
    """
    wanted = used if language == DEFAULT_LANGUAGE else used | _done(DEFAULT_LANGUAGE)
    return sorted(wanted - _done(language))


def main() -> int:
    """Print what each catalogue lacks; exit 1 when anything does."""
    used = used_msgids()
    gaps = 0
    for language in LANGUAGES:
        for msgid in missing(language, used):
            print(f"{language}: {msgid}")
            gaps += 1
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
