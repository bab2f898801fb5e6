"""Languages: complete catalogues, no page text outside them, the reader's language, summaries."""

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import httpx
import pytest
from babel.messages.pofile import read_po

from api.app import create_app
from api.i18n.catalogue import LANGUAGES, LanguageCode, messages, po_path
from api.i18n.extract import STATIC_DIR, missing, page_texts, script_messages, used_msgids
from api.i18n.negotiate import accepted, choose_language
from api.i18n.summaries import render_summary
from detectors.base import DETECTORS, Detector, IncidentFacts
from detectors.engine import load_detector_modules
from meterguard.model import (
    Alert,
    AlertEvent,
    AlertEventType,
    AlertKind,
    Meter,
    MeterRegistry,
    Severity,
    SummaryMessage,
)
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings

PLACEHOLDER = re.compile(r"\{(\w+)\}")


# --- The catalogues -------------------------------------------------------------------------


def test_each_language_has_a_catalogue_and_the_api_type_names_them_all() -> None:
    assert set(get_args(LanguageCode)) == set(LANGUAGES)
    for language in LANGUAGES:
        assert po_path(language).is_file()


def test_every_message_the_pages_and_summaries_use_is_translated() -> None:
    used = used_msgids()
    load_detector_modules()
    summaries = {f"summary.{name}" for name in DETECTORS} | {"summary.tamper_unchanged"}
    assert summaries <= set(messages("en")), "a detector's summary has no catalogue entry"
    for language in LANGUAGES:
        assert missing(language, used) == [], f"{language} lacks these"
    # Nothing in the catalogues that nothing uses: a stale entry misleads a translator.
    assert set(messages("en")) - used - summaries == set()


def test_translations_keep_every_placeholder_and_are_not_english() -> None:
    english, chinese = messages("en"), messages("zh-CN")
    for msgid, text in english.items():
        assert set(PLACEHOLDER.findall(chinese[msgid])) == set(PLACEHOLDER.findall(text)), msgid
        words = PLACEHOLDER.sub("", text).replace("kWh", "").replace("meterguard", "")
        if re.search(r"[A-Za-z]{3}", words):
            # A Chinese text with no Chinese in it is an English one left in place.
            assert re.search(r"[\u4e00-\u9fff]", chinese[msgid]), msgid


def test_no_catalogue_entry_is_fuzzy_or_duplicated() -> None:
    for language in LANGUAGES:
        with po_path(language).open("rb") as po:
            catalogue = read_po(po)
        ids = [m.id for m in catalogue if m.id]
        assert len(ids) == len(set(ids))
        assert not [m.id for m in catalogue if m.id and m.fuzzy]


def test_practice_terms_are_used_in_chinese() -> None:
    chinese = " ".join(messages("zh-CN").values())
    for term in (
        "欠流法",
        "欠压法",
        "移相法",
        "无表窃电",
        "一线一地",
        "封印",
        "电流互感器变比",
        "线损",
    ):
        assert term in chinese, term


def js_literals(source: str) -> list[str]:
    """Return a script's string literals and its template literals' text (not their ${...})."""
    found: list[str] = []

    def code(i: int, nested: bool) -> int:
        depth = 0
        while i < len(source):
            c, pair = source[i], source[i : i + 2]
            if pair == "//":
                i = source.find("\n", i)
                i = len(source) if i < 0 else i
            elif pair == "/*":
                i = source.index("*/", i) + 2
            elif c in "\"'":
                end = i + 1
                while source[end] != c:
                    end += 2 if source[end] == "\\" else 1
                found.append(source[i + 1 : end])
                i = end + 1
            elif c == "`":
                i = template(i + 1)
            else:
                depth += c == "{"
                if c == "}":
                    if nested and depth == 0:
                        return i + 1
                    depth -= 1
                i += 1
        return i

    def template(i: int) -> int:
        chunk = ""
        while source[i] != "`":
            if source[i : i + 2] == "${":
                found.append(chunk)
                chunk = ""
                i = code(i + 2, nested=True)
            else:
                chunk += source[i : i + 2] if source[i] == "\\" else source[i]
                i += 2 if source[i] == "\\" else 1
        found.append(chunk)
        return i + 1

    code(0, nested=False)
    return [s.strip() for s in found if s.strip()]


#: A literal that reads as English: two words, or one capitalised word ("Ack", "Sign out").
PROSE = re.compile(r"[A-Za-z]{2,}[ ,;.'][ ]?[A-Za-z]{2,}|^[A-Z][a-z]+$")
#: Literals that are no text people read: selectors, cookie attributes, HTTP names.
TECHNICAL = re.compile(
    r"^([\w-]*[#.\[]\S*( \S+)*"  # CSS selectors: the first part names an id, class or attribute
    r"|\[translate=no\], script, style|=?;? ?(path=/; )?SameSite=Strict(; max-age=\d+)?"
    r"|/\S*"  # URL paths: /evidence.pdf
    r"|Content-Type|Authorization|Bearer|use strict)$"
)


#: Class names and a quantity's symbol (In: the neutral current) that read like words.
NOT_TEXT = {"live on", "live off", "order card", "badge status", "In"}


def english_outside_messages(source: str) -> list[str]:
    """Return the literals of a script that read as English and are no msgid of MG.t."""
    asked = set(script_messages(source))
    return [
        s
        for s in js_literals(source)
        if s not in asked and s not in NOT_TEXT and PROSE.search(s) and not TECHNICAL.match(s)
    ]


@pytest.mark.parametrize("script", sorted(p.name for p in STATIC_DIR.glob("*.js")))
def test_no_english_in_a_page_script_outside_the_catalogues(script: str) -> None:
    source = (STATIC_DIR / script).read_text(encoding="utf-8")
    assert english_outside_messages(source) == []


def test_the_scans_find_english_left_in_a_script_and_on_a_page(tmp_path: Path) -> None:
    # The scans themselves: a text added without the catalogue is seen.
    source = (
        'MG.el("p", {}, "no alerts left"); MG.t("Sign in"); // a comment, not a text\n'
        "x.textContent = `${n ? `${m} Open` : MG.t(\"done\")} Done`; q('#alerts tbody');"
    )
    assert english_outside_messages(source) == ["no alerts left", "Open", "Done"]
    page = tmp_path / "p.html"
    page.write_text(
        '<header><a translate="no">meterguard</a></header><h1 title="the board">Hello '
        "<small>there</small></h1><script>var x = 'y';</script>",
        encoding="utf-8",
    )
    assert page_texts(page) == ["the board", "Hello", "there"]


# --- The reader's language ------------------------------------------------------------------


def test_language_is_the_setting_then_accept_language_then_english() -> None:
    assert choose_language("zh-CN", "en-GB,en;q=0.9") == "zh-CN"
    assert choose_language("en", "zh-CN") == "en"
    assert choose_language(None, "fr-FR, zh-Hans;q=0.8, en;q=0.5") == "zh-CN"
    assert choose_language(None, "fr, de;q=0.5") == "en"
    assert choose_language(None, None) == "en"
    assert choose_language("xx", "zh;q=0.1, en;q=0.05") == "zh-CN"  # an unknown setting
    assert accepted("en;q=0.2, zh-CN, fr;q=0, de;q=0.5") == ["zh-CN", "de", "en"]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        storage=StorageSettings(data_dir=tmp_path),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[Meter(id="M1", service="3p4w", nominal_v=230)],
    )
    rt = Runtime.open(settings)
    yield rt
    await rt.close()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_a_users_setting_wins_over_the_browser_and_a_visitor_keeps_a_cookie(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, token = await runtime.users.create_user("olga", "operator")
    olga = {"Authorization": f"Bearer {token}"}
    chinese_browser = {"Accept-Language": "zh-CN,zh;q=0.9"}

    async def language(headers: dict[str, str]) -> str:
        answer = await client.get("/api/i18n", headers=headers)
        assert answer.status_code == 200
        body = answer.json()
        assert body["messages"]["Alert board"] == messages(body["language"])["Alert board"]
        return str(body["language"])

    assert await language({}) == "en"
    assert await language(chinese_browser) == "zh-CN"
    assert await language({**olga, **chinese_browser}) == "zh-CN"
    chose = await client.put("/api/me/language", json={"language": "en"}, headers=olga)
    assert chose.status_code == 200
    assert (await client.get("/api/me", headers=olga)).json()["language"] == "en"
    client.cookies.clear()  # the answer's cookie too: the user record alone decides
    assert await language({**olga, **chinese_browser}) == "en"
    # A wrong token is no setting: the browser's language still counts, and no 401.
    assert await language({"Authorization": "Bearer nope", **chinese_browser}) == "zh-CN"
    # Back to the browser's say.
    await client.put("/api/me/language", json={"language": None}, headers=olga)
    assert "mg_lang" not in client.cookies
    assert await language({**olga, **chinese_browser}) == "zh-CN"
    refused = await client.put("/api/me/language", json={"language": "fr"}, headers=olga)
    assert refused.status_code == 422

    # A visitor (the anonymous viewer) gets the choice back as a cookie, which then counts.
    client.cookies.clear()
    visitor = await client.put("/api/me/language", json={"language": "zh-CN"})
    assert visitor.status_code == 200
    assert visitor.cookies.get("mg_lang") == "zh-CN"
    assert await language({"Accept-Language": "en"}) == "zh-CN"
    client.cookies.clear()
    assert await language({"Accept-Language": "en"}) == "en"


# --- Alert summaries ------------------------------------------------------------------------


def _detectors() -> dict[str, Detector]:
    load_detector_modules()
    registry = MeterRegistry([Meter(id="M1", service="3p4w", nominal_v=230, ct_primary_a=200)])
    return {name: cls(cls.config_model(), registry) for name, cls in DETECTORS.items()}


FACTS = [
    IncidentFacts(phase=0, duration_s=45, peak_magnitude=0.03, kwh_lost=0.04),
    IncidentFacts(phase=2, duration_s=1800, peak_magnitude=0.42, kwh_lost=3.25),
    IncidentFacts(phase=1, duration_s=5 * 3600, peak_magnitude=0.18, kwh_lost=12.0),
    IncidentFacts(phase=3, duration_s=3 * 86400, peak_magnitude=1.3, kwh_lost=250.0),
    IncidentFacts(phase=2, duration_s=7200, peak_magnitude=2400.0, kwh_lost=9.5),
    IncidentFacts(phase=0, duration_s=89.6, peak_magnitude=0.95, kwh_lost=0.0),
]


def test_every_detectors_summary_renders_in_english_as_the_detector_writes_it() -> None:
    for name, detector in _detectors().items():
        for facts in FACTS:
            english = detector.summarise(facts)
            message = detector.summary_message(facts)
            assert render_summary(message, "", "en") == english, name


def test_a_summary_renders_in_chinese_with_the_practices_terms() -> None:
    detectors = _detectors()
    facts = IncidentFacts(phase=2, duration_s=5 * 3600, peak_magnitude=0.42, kwh_lost=12.34)
    bypass = render_summary(detectors["bypass"].summary_message(facts), "", "zh-CN")
    assert bypass == (
        "B相：中性线电流显示最多 42% 的负荷电流未经计量（欠流法），"
        "持续 5.0 小时（估计少计 12.3 kWh）"
    )
    saturated = IncidentFacts(phase=0, duration_s=3 * 86400, peak_magnitude=1.3, kwh_lost=0)
    ct = render_summary(detectors["ct_ratio"].summary_message(saturated), "", "zh-CN")
    assert "高于 120%：铁芯饱和" in ct
    assert "3.0 天" in ct
    assert "电流互感器变比" in ct


def test_a_summary_without_a_message_or_with_an_unknown_key_stays_english() -> None:
    assert render_summary(None, "phase 2 reversed", "zh-CN") == "phase 2 reversed"
    unknown = SummaryMessage(key="summary.nothing_known", params={})
    assert render_summary(unknown, "as written", "zh-CN") == "as written"
    lacking = SummaryMessage(key="summary.bypass", params={"phase": 1})  # no figures: zeros
    assert render_summary(lacking, "x", "zh-CN").startswith("A相：")


async def test_the_api_keeps_english_for_machines_and_renders_for_the_reader(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    facts = IncidentFacts(phase=2, duration_s=7200, peak_magnitude=2400.0, kwh_lost=9.5)
    reversal = _detectors()["reversal"]
    alert = Alert(
        id="M1-reversal-1767225600",
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        phase=2,
        confidence=0.9,
        estimated_kwh_lost=9.5,
        summary=reversal.summarise(facts),
        summary_message=reversal.summary_message(facts),
    )
    await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1_767_225_700, alert=alert))
    english = "phase 2 active power reversed, up to 2.40 kW exported, for 2.0 h"
    chinese = "B相有功功率反向，最多反送 2.40 kW，持续 2.0 小时"
    zh = {"Accept-Language": "zh-CN"}
    for url, path in (
        ("/api/alerts", ("items", 0)),
        (f"/api/alerts/{alert.id}", ()),
        ("/api/meters/M1", ("alerts", 0)),
    ):
        for headers in (zh, {}):
            shown = (await client.get(url, headers=headers)).json()
            for step in path:
                shown = shown[step]
            assert shown["summary"].startswith(english), url
            if headers:
                assert shown["summary_text"].startswith(chinese), url
            else:
                assert shown["summary_text"] == shown["summary"], url
