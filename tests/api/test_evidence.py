"""Evidence packs: a case's files with a manifest that verifies, a PDF that opens, an audit."""

import asyncio
import hashlib
import io
import json
import subprocess
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.stores.records import CheckAnswer, Checklist, Outcome
from tests.api.control_room import control_room as signed_in
from tests.api.test_photos import jpeg
from tests.conftest import make_batch

ONSET = 1_767_225_600.0
#: The crew's finding, in the language of the practice: the pack must keep it as written.
FINDING = "封印被破坏, 电流互感器二次侧短接"

Client = tuple[httpx.AsyncClient, dict[str, str], Runtime]


@pytest.fixture
async def case(tmp_path: Path) -> AsyncIterator[Client]:
    meters = [Meter(id="M1", service="3p4w", nominal_v=230, transformer="T7")]
    async with signed_in(tmp_path, meters) as (client, tokens, runtime):
        yield await _open_case(client, tokens, runtime)


async def _open_case(client: httpx.AsyncClient, tokens: dict[str, str], runtime: Runtime) -> Client:
    alert = Alert(
        id="M1-bypass-1767225600",
        meter="M1",
        kind=AlertKind.BYPASS,
        severity=Severity.MAJOR,
        start=ONSET,
        raised=ONSET + 120,
        phase=2,
        confidence=0.93,
        estimated_kwh_lost=41.5,
        summary="phase 2 bypassed: neutral carries 4.1 A the phases do not explain",
        evidence={"neutral_mismatch_a": 4.1, "onset": {"ts": ONSET}},
    )
    await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=ONSET + 120, alert=alert))
    # A day before onset and two hours after, one reading a minute; phase 2 falls at onset.
    rows = [
        (
            ONSET + 60.0 * k,
            0,
            {"v1": 230.0, "v2": 229.0, "v3": 231.0, "i1": 5.0, "i2": 5.0 if k < 0 else 1.0,
             "i3": 5.0, "p1": 1100.0, "p2": 1100.0 if k < 0 else 220.0, "p3": 1100.0},
        )
        for k in range(-24 * 60, 120)
    ]  # fmt: skip
    await runtime.series.write(make_batch(rows))
    await runtime.cases.comment(alert.id, "olga", "sent carl")
    order = await runtime.cases.create_work_order([alert.id], "olga", "check the seals", "carl")
    await runtime.cases.update_work_order(
        order.id,
        "carl",
        outcome=Outcome.THEFT_CONFIRMED,
        note=FINDING,
        outcome_method="bypass",
        checklist=Checklist(seals_intact=CheckAnswer.NO, notes="seal 0412 cut"),
    )
    return client, tokens, runtime


def _as(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


async def test_the_pack_holds_the_case_and_its_manifest_verifies(case: Client) -> None:
    client, tokens, runtime = case
    reply = await client.get(
        "/api/alerts/M1-bypass-1767225600/evidence.zip", headers=_as(tokens, "olga")
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/zip"
    assert "evidence-M1-bypass-1767225600.zip" in reply.headers["content-disposition"]
    assert reply.headers["x-evidence-sha256"] == hashlib.sha256(reply.content).hexdigest()
    pack = zipfile.ZipFile(io.BytesIO(reply.content))
    names = set(pack.namelist())
    assert names == {
        "alert.json", "case.json", "readings.csv", "evidence.pdf", "manifest.json", "SHA256SUMS",
    }  # fmt: skip
    manifest = json.loads(pack.read("manifest.json"))
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == names - {"manifest.json", "SHA256SUMS"}
    for name, entry in listed.items():
        data = pack.read(name)
        assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    sums = pack.read("SHA256SUMS")
    assert manifest["pack_sha256"] == hashlib.sha256(sums).hexdigest()
    assert sums.decode().splitlines()[0].endswith("  alert.json")

    alert = json.loads(pack.read("alert.json"))
    assert alert["alert"]["evidence"]["neutral_mismatch_a"] == 4.1
    assert alert["meter"]["transformer"] == "T7"
    assert [h["type"] for h in alert["history"]] == ["open"]
    work = json.loads(pack.read("case.json"))
    assert work["work_orders"][0]["outcome_note"] == FINDING
    assert [c["text"] for c in work["comments"]] == ["sent carl"]
    readings = pack.read("readings.csv").decode().splitlines()
    assert readings[0].startswith("time,ts,v1,v2,v3,i1,i2,i3")
    assert len(readings) == 1 + 24 * 60 + 120  # a day before onset, and since
    assert readings[1].startswith("2025-12-31T00:00:00Z,")

    # The hand-over is on the record, with what was handed over.
    audit = await runtime.cases.audit(alert_id="M1-bypass-1767225600")
    assert audit[0].action == "evidence_pack"
    assert audit[0].actor == "olga"
    assert audit[0].detail["zip_sha256"] == reply.headers["x-evidence-sha256"]
    assert audit[0].detail["pack_sha256"] == manifest["pack_sha256"]


async def test_the_pack_holds_the_crews_photos_as_uploaded(case: Client) -> None:
    client, tokens, _ = case
    # The order is closed: the office files the photo the crew handed in.
    photo = jpeg("navy")
    uploaded = await client.post(
        "/api/work-orders/1/photos?lat=31.5&lon=121.25&name=terminal.jpg",
        content=photo,
        headers={**_as(tokens, "olga"), "Content-Type": "image/jpeg"},
    )
    assert uploaded.status_code == 201, uploaded.text
    digest = hashlib.sha256(photo).hexdigest()
    reply = await client.get(
        "/api/alerts/M1-bypass-1767225600/evidence.zip", headers=_as(tokens, "olga")
    )
    pack = zipfile.ZipFile(io.BytesIO(reply.content))
    assert pack.read(f"photos/{digest}.jpg") == photo
    listed = {f["name"]: f["sha256"] for f in json.loads(pack.read("manifest.json"))["files"]}
    assert listed[f"photos/{digest}.jpg"] == digest
    assert "photos.json" in listed
    (record,) = json.loads(pack.read("photos.json"))
    assert (record["uploaded_by"], record["latitude"], record["file"]) == (
        "olga",
        31.5,
        f"photos/{digest}.jpg",
    )


async def test_a_photo_the_store_lost_is_named_and_the_pack_still_made(case: Client) -> None:
    client, tokens, runtime = case
    photo = jpeg("olive")
    uploaded = await client.post(
        "/api/work-orders/1/photos",
        content=photo,
        headers={**_as(tokens, "olga"), "Content-Type": "image/jpeg"},
    )
    runtime.photo_files.path(uploaded.json()["sha256"]).unlink()
    reply = await client.get(
        "/api/alerts/M1-bypass-1767225600/evidence.zip", headers=_as(tokens, "olga")
    )
    assert reply.status_code == 200
    pack = zipfile.ZipFile(io.BytesIO(reply.content))
    assert not [n for n in pack.namelist() if n.startswith("photos/")]
    (record,) = json.loads(pack.read("photos.json"))
    assert (record["sha256"], record["file"]) == (hashlib.sha256(photo).hexdigest(), None)


async def test_only_operators_get_packs_and_unknown_alerts_are_404(case: Client) -> None:
    client, tokens, _ = case
    url = "/api/alerts/M1-bypass-1767225600/evidence"
    for name in ("carl", "vic"):
        for ext in ("zip", "pdf"):
            assert (await client.get(f"{url}.{ext}", headers=_as(tokens, name))).status_code == 403
    assert (await client.get(f"{url}.zip")).status_code == 401
    missing = await client.get("/api/alerts/nope/evidence.zip", headers=_as(tokens, "olga"))
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]


def _rendered_text(pdf: Path, pages_prefix: Path) -> str:
    """Render the PDF's pages (pdftoppm) and return its text (pdftotext); check its fonts."""
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(pages_prefix)], check=True)
    pages = sorted(pages_prefix.parent.glob(f"{pages_prefix.name}-*.png"))
    assert len(pages) >= 2
    assert all(p.stat().st_size > 2_000 for p in pages)  # drawn pages, not blank ones
    # The free text is set in a CJK font the PDF carries (a subset), not one the reader
    # must have: Chinese findings show as written everywhere.
    fonts = subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True, text=True)
    cjk = [line for line in fonts.stdout.splitlines() if "WenQuanYi" in line]
    assert cjk, fonts.stdout
    assert all(line.split()[-5:-3] == ["yes", "yes"] for line in cjk), fonts.stdout
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.poppler
async def test_the_report_renders_page_by_page_with_the_case_in_it(
    case: Client, tmp_path: Path
) -> None:
    client, tokens, runtime = case
    photo = jpeg("teal")
    await client.post(
        "/api/work-orders/1/photos?name=seal.jpg",
        content=photo,
        headers={**_as(tokens, "olga"), "Content-Type": "image/jpeg"},
    )
    url = "/api/alerts/M1-bypass-1767225600/evidence.pdf"
    reply = await client.get(url, headers=_as(tokens, "olga"))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/pdf"
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(reply.content)
    text = await asyncio.to_thread(_rendered_text, pdf, tmp_path / "page")
    expected = (
        "M1-bypass-1767225600",
        "neutral_mismatch_a",
        "Voltage (V)",
        "Current (A)",
        "check the seals",
        "theft_confirmed",
        "readings.csv",
        "seal 0412 cut",
        "Photos",
        "seal.jpg",
        hashlib.sha256(photo).hexdigest(),
    )
    for phrase in expected:
        assert phrase in text, phrase
    assert FINDING.replace(" ", "") in text.replace(" ", "")
    audit = await runtime.cases.audit(alert_id="M1-bypass-1767225600")
    assert audit[0].action == "evidence_report"
    assert audit[0].detail["pdf_sha256"] == hashlib.sha256(reply.content).hexdigest()
