"""Evidence packs: what a case holds, as files a legal department can keep and verify.

A pack is a ZIP of the alert with its detector figures and history (alert.json), the
meter's readings from a day before onset to the end of the alert or now (readings.csv),
the case (case.json: acknowledgements, assignments, comments, work orders with their
checklists and findings, the audit trail), a report of all of it with plots
(evidence.pdf), the crews' photos as uploaded (photos/<sha256>.<ext>, with who took
them, when and where in photos.json), and the manifest: every file's size and SHA-256
(manifest.json, and SHA256SUMS for `sha256sum -c`), and the pack's own digest over those
lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meterguard.model import Alert, Meter
from meterguard.stores import SeriesStore
from meterguard.stores.records import (
    Acknowledgement,
    Assignment,
    AuditEntry,
    Comment,
    Photo,
    WorkOrder,
)
from meterguard.stores.repositories import AlertRepository, CaseRepository

#: Readings from this long before onset: the meter as it was before.
BEFORE_ONSET_S = 86_400.0
#: At most this much of the meter's history goes into one pack, from a day before onset on
#: (an alert open for months; some 130,000 one-minute readings).
LONGEST_WINDOW_S = 92 * 86_400.0
#: Points per plotted quantity (the store averages readings into this many buckets).
PLOT_POINTS = 600
#: Quantities in the CSV and their plots, by plot.
PLOTS = {
    "Voltage (V)": ("v1", "v2", "v3"),
    "Current (A)": ("i1", "i2", "i3", "in"),
    "Active power (W)": ("p1", "p2", "p3"),
}
CSV_FIELDS = (
    "v1", "v2", "v3", "i1", "i2", "i3", "in", "p1", "p2", "p3", "q1", "q2", "q3",
    "f", "e_imp", "e_exp",
)  # fmt: skip


@dataclass(slots=True)
class CaseRecord:
    """Everything the pack tells of one alert, read at one moment."""

    alert: Alert
    meter: Meter | None
    history: list[dict[str, Any]]
    acknowledgements: list[Acknowledgement]
    assignments: list[Assignment]
    comments: list[Comment]
    work_orders: list[WorkOrder]
    audit: list[AuditEntry]
    window: tuple[float, float]
    #: Raw readings for the CSV: ts and each quantity.
    readings: dict[str, list[float]] = field(default_factory=dict)
    #: Bucketed readings for the plots.
    plotted: dict[str, list[float]] = field(default_factory=dict)
    #: The photos documenting the alert, and their bytes by SHA-256 (absent: file missing).
    photos: list[Photo] = field(default_factory=list)
    photo_bytes: dict[str, bytes] = field(default_factory=dict)


def rfc3339(ts: float) -> str:
    """Return an epoch time as RFC 3339 UTC with seconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def gather(
    alert_id: str,
    alerts: AlertRepository,
    cases: CaseRepository,
    series: SeriesStore,
    meter: Meter | None,
    now: float,
) -> CaseRecord:
    """Read the alert, its case and the meter's readings around it (AlertNotFoundError)."""
    alert, _ = await alerts.detail(alert_id)
    start = alert.start - BEFORE_ONSET_S
    end = min(alert.end if alert.end is not None else now, now, start + LONGEST_WINDOW_S)
    raw = await series.query(alert.meter, start, end, CSV_FIELDS)
    # The plots span the readings there are, so that their buckets are no wider than need be.
    last = float(raw.ts[-1]) if len(raw.ts) else end
    plotted = await series.query(
        alert.meter, start, last, sorted({q for qs in PLOTS.values() for q in qs}), PLOT_POINTS
    )
    return CaseRecord(
        alert=alert,
        meter=meter,
        history=await alerts.history(alert_id),
        acknowledgements=await cases.acknowledgements(alert_id),
        assignments=await cases.assignments(alert_id),
        comments=await cases.comments(alert_id),
        work_orders=await cases.work_orders(alert_id=alert_id),
        audit=list(reversed(await cases.audit(alert_id=alert_id, limit=100_000))),
        window=(start, last),
        readings={"ts": raw.ts.tolist(), **{q: v.tolist() for q, v in raw.values.items()}},
        plotted={"ts": plotted.ts.tolist(), **{q: v.tolist() for q, v in plotted.values.items()}},
    )


def readings_csv(record: CaseRecord) -> bytes:
    """Return the readings as CSV: time (RFC 3339 UTC), epoch seconds, the quantities."""
    quantities = [q for q in CSV_FIELDS if q in record.readings]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "ts", *quantities])
    for row, ts in enumerate(record.readings.get("ts", [])):
        values = [record.readings[q][row] for q in quantities]
        writer.writerow(
            [rfc3339(ts), f"{ts:.3f}", *("" if math.isnan(v) else f"{v:.6g}" for v in values)]
        )
    return out.getvalue().encode()


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True).encode()


def alert_json(record: CaseRecord) -> bytes:
    """Return the alert, the meter it concerns and the alert's history as JSON."""
    return _json(
        {
            "alert": record.alert.model_dump(mode="json"),
            "meter": record.meter.model_dump(mode="json") if record.meter else None,
            "history": record.history,
        }
    )


def case_json(record: CaseRecord) -> bytes:
    """Return the case work on the alert as JSON, oldest first."""
    return _json(
        {
            "acknowledgements": [a.model_dump(mode="json") for a in record.acknowledgements],
            "assignments": [a.model_dump(mode="json") for a in record.assignments],
            "comments": [c.model_dump(mode="json") for c in record.comments],
            "work_orders": [w.model_dump(mode="json") for w in record.work_orders],
            "audit": [e.model_dump(mode="json") for e in record.audit],
        }
    )


#: File name extensions of the photo types, in the pack.
PHOTO_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
}


def photo_name(photo: Photo) -> str:
    """Return a photo's name in the pack: photos/<sha256>.<extension>."""
    return f"photos/{photo.sha256}.{PHOTO_EXTENSIONS.get(photo.media_type, 'bin')}"


def photo_files(record: CaseRecord) -> dict[str, bytes]:
    """Return the photos' files by name in the pack (one per content) and photos.json."""
    files = {
        photo_name(p): record.photo_bytes[p.sha256]
        for p in record.photos
        if p.sha256 in record.photo_bytes
    }
    listed = [
        {
            **p.model_dump(mode="json"),
            "file": photo_name(p) if p.sha256 in record.photo_bytes else None,
        }
        for p in record.photos
    ]
    return {**files, "photos.json": _json(listed)} if record.photos else {}


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sums_text(files: dict[str, bytes]) -> str:
    """Return `sha256sum` lines for the files, by name: what the pack digest is taken over."""
    return "".join(f"{sha256(data)}  {name}\n" for name, data in sorted(files.items()))


def manifest(
    files: dict[str, bytes], alert_id: str, created_by: str, created_at: float
) -> dict[str, Any]:
    """Return the manifest: each file's size and SHA-256, and the pack's digest over them."""
    return {
        "alert_id": alert_id,
        "created_at": rfc3339(created_at),
        "created_by": created_by,
        "files": [
            {"name": name, "bytes": len(data), "sha256": sha256(data)}
            for name, data in sorted(files.items())
        ],
        "pack_sha256": sha256(sums_text(files).encode()),
        "pack_sha256_of": "the SHA256SUMS file of this pack",
    }


def zip_pack(files: dict[str, bytes], created_at: float) -> bytes:
    """Return the files as one ZIP, each stamped with the pack's time."""
    stamp = datetime.fromtimestamp(created_at, UTC).timetuple()[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as pack:
        for name, data in files.items():
            pack.writestr(zipfile.ZipInfo(name, date_time=stamp), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()
