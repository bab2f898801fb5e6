"""Evidence packs of a case: the report as PDF, and the whole pack as a ZIP with its manifest.

Operators and administrators only: a pack holds every crew's findings. Each download is
written to the case's audit trail with the SHA-256 of what was handed over, so that a
pack produced later in court can be checked against the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response

from api.auth import Operator
from api.deps import (
    AlertRepoDep,
    CaseRepoDep,
    PhotoFilesDep,
    PhotoRepoDep,
    RegistryDep,
    SeriesDep,
)
from api.evidence import (
    CaseRecord,
    alert_json,
    case_json,
    gather,
    manifest,
    photo_files,
    readings_csv,
    sha256,
    sums_text,
    zip_pack,
)
from api.evidence_pdf import render_pdf
from meterguard.errors import AlertNotFoundError
from meterguard.stores.photofiles import PhotoFiles

router = APIRouter(prefix="/api", tags=["cases"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such alert"}}
DIGEST_HEADER = "X-Evidence-SHA256"


@dataclass(frozen=True, slots=True)
class Pack:
    """A case's files by name (the PDF last, listing the others), who asked, and when."""

    alert_id: str
    files: dict[str, bytes]
    made_by: str
    made_at: float


async def _pack(
    alert_id: str,
    who: Operator,
    alerts: AlertRepoDep,
    cases: CaseRepoDep,
    series: SeriesDep,
    registry: RegistryDep,
    photos: PhotoRepoDep,
    store: PhotoFilesDep,
) -> Pack:
    """Gather the case and make its files (404 for an unknown alert)."""
    now = time.time()
    try:
        listing = await alerts.listing(alert_id)
        record = await gather(alert_id, alerts, cases, series, registry.get(listing.meter), now)
    except AlertNotFoundError:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id!r}") from None
    record.photos = await photos.of_alert(alert_id)
    record.photo_bytes = await asyncio.to_thread(_read_photos, store, record)
    files = {
        "alert.json": alert_json(record),
        "case.json": case_json(record),
        "readings.csv": readings_csv(record),
        **photo_files(record),
    }
    digests = {name: sha256(data) for name, data in files.items()}
    # Laying out pages is CPU work of up to a second: off the event loop.
    files["evidence.pdf"] = await asyncio.to_thread(render_pdf, record, who.name, now, digests)
    return Pack(alert_id, files, who.name, now)


def _read_photos(store: PhotoFiles, record: CaseRecord) -> dict[str, bytes]:
    """Read the photos' files; one the store lost is left out (photos.json says so)."""
    found: dict[str, bytes] = {}
    for photo in record.photos:
        with contextlib.suppress(FileNotFoundError):
            found[photo.sha256] = store.read(photo.sha256)
    return found


PackDep = Annotated[Pack, Depends(_pack)]


def _attachment(data: bytes, media_type: str, filename: str, digest: str) -> Response:
    return Response(
        content=data,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            DIGEST_HEADER: digest,
        },
    )


def _file_name(alert_id: str, extension: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in alert_id)
    return f"evidence-{safe}.{extension}"


@router.get(
    "/alerts/{alert_id}/evidence.zip",
    responses={**NOT_FOUND, 200: {"content": {"application/zip": {}}}},
    response_class=Response,
)
async def evidence_zip(alert_id: str, pack: PackDep, cases: CaseRepoDep) -> Response:
    """Return the case's evidence pack: files, manifest.json and SHA256SUMS in one ZIP."""
    files = dict(pack.files)
    listed = manifest(files, alert_id, pack.made_by, pack.made_at)
    sums = sums_text(files)
    files["manifest.json"] = json.dumps(listed, indent=2, ensure_ascii=False).encode()
    files["SHA256SUMS"] = sums.encode()
    data = zip_pack(files, pack.made_at)
    digest = sha256(data)
    await cases.record(
        alert_id,
        pack.made_by,
        "evidence_pack",
        {"zip_sha256": digest, "pack_sha256": listed["pack_sha256"], "files": len(files)},
    )
    return _attachment(data, "application/zip", _file_name(alert_id, "zip"), digest)


@router.get(
    "/alerts/{alert_id}/evidence.pdf",
    responses={**NOT_FOUND, 200: {"content": {"application/pdf": {}}}},
    response_class=Response,
)
async def evidence_pdf(alert_id: str, pack: PackDep, cases: CaseRepoDep) -> Response:
    """Return the case's evidence report as PDF (the report inside the ZIP)."""
    data = pack.files["evidence.pdf"]
    digest = sha256(data)
    await cases.record(alert_id, pack.made_by, "evidence_report", {"pdf_sha256": digest})
    return _attachment(data, "application/pdf", _file_name(alert_id, "pdf"), digest)
