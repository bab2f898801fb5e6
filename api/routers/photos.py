"""Photos crews take on site: uploaded to a work order, shown to operators, kept by hash.

A crew member uploads to, and sees, only the work orders assigned to them (403 for any
other); operators and administrators see every photo; viewers none (a photo may show a
customer's home). The body of an upload is the image itself, as the phone's camera gave
it; its type is judged by its bytes (api/photo_check.py), and a refused upload is
counted by reason (`meterguard_photos_refused`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel

from api.auth import READERS, Principal, Reader
from api.deps import CaseRepoDep, PhotoFilesDep, PhotoRepoDep, RuntimeDep, SettingsDep
from api.photo_check import PhotoRefusedError, check_photo, thumbnail, too_large
from meterguard.roles import Role
from meterguard.stores.photofiles import PhotoFiles
from meterguard.stores.records import NewPhoto, Photo, WorkOrder, WorkOrderStatus

router = APIRouter(prefix="/api", tags=["photos"])

#: Who sees photos: a crew only those of its own work orders.
SEE_PHOTOS = READERS - {Role.VIEWER}
CLOSED = frozenset({WorkOrderStatus.DONE, WorkOrderStatus.CANCELLED})
WorkOrderId = Annotated[int, Path(ge=1, le=2**31 - 1)]
PhotoId = Annotated[int, Path(ge=1, le=2**31 - 1)]
REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "Larger than [api] photo_max_mb"},
    415: {"description": "Not JPEG, PNG, WebP or HEIC, or not the type it was sent as"},
    422: {"description": "Not an image, or a damaged one"},
}
IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}}
            for t in sorted({"image/jpeg", "image/png", "image/webp", "image/heic"})
        },
    }
}


class PhotoList(BaseModel):
    """Photos, oldest first."""

    items: list[Photo]
    count: int


def _may_see(who: Principal) -> None:
    if who.role not in SEE_PHOTOS:
        raise HTTPException(status_code=403, detail=f"{who.role.value} may not see photos")


def _own(who: Principal, order: WorkOrder) -> None:
    """403 unless the caller may act on the order: its crew, or the office."""
    if who.role is Role.CREW and order.assignee != who.name:
        raise HTTPException(status_code=403, detail="not your work order")


async def _order(work_order_id: int, who: Principal, cases: CaseRepoDep) -> WorkOrder:
    _may_see(who)
    order = await cases.work_order(work_order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no work order {work_order_id}")
    _own(who, order)
    return order


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the upload, refusing it (413) as soon as it passes the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/work-orders/{work_order_id}/photos",
    response_model=Photo,
    status_code=201,
    responses={
        **REFUSALS,
        404: {"description": "No such work order"},
        409: {"description": "A crew's work order that is closed"},
    },
    openapi_extra=IMAGE_BODY,
)
async def upload(
    work_order_id: WorkOrderId,
    request: Request,
    who: Reader,
    cases: CaseRepoDep,
    photos: PhotoRepoDep,
    files: PhotoFilesDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
    alert_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    name: Annotated[str, Query(max_length=200)] = "",
) -> Photo:
    """Attach a photo to a work order: the image as the body, where it was taken in the query.

    `alert_id` names which of the order's alerts it documents (default: its first);
    `lat`/`lon` the phone's position if it gave one; `name` the file's name on the phone.
    """
    order = await _order(work_order_id, who, cases)
    if who.role is Role.CREW and order.status in CLOSED:
        raise HTTPException(status_code=409, detail=f"work order is {order.status.value}")
    alert = alert_id or order.alert_id
    if alert not in order.alert_ids:
        raise HTTPException(status_code=422, detail=f"work order does not cover {alert}")
    if (lat is None) != (lon is None):
        raise HTTPException(status_code=422, detail="give both lat and lon, or neither")
    limit = int(settings.api.photo_max_mb * 1_000_000)
    try:
        data = await _read_body(request, limit)
        # Decoding a 12 MP photo takes a tenth of a second: off the event loop.
        facts = await asyncio.to_thread(check_photo, data, request.headers.get("content-type", ""))
    except PhotoRefusedError as refused:
        refusals = runtime.photos_refused
        refusals[refused.reason] = refusals.get(refused.reason, 0) + 1
        raise HTTPException(status_code=refused.status, detail=str(refused)) from None
    digest = await asyncio.to_thread(files.put, data)
    return await photos.add(
        NewPhoto(
            sha256=digest,
            media_type=facts.media_type,
            bytes=len(data),
            width=facts.width,
            height=facts.height,
            work_order_id=order.id,
            alert_id=alert,
            uploaded_by=who.name,
            latitude=lat,
            longitude=lon,
            taken_at=facts.taken_at,
            file_name=name,
        )
    )


@router.get(
    "/work-orders/{work_order_id}/photos",
    response_model=PhotoList,
    responses={404: {"description": "No such work order"}},
)
async def work_order_photos(
    work_order_id: WorkOrderId, who: Reader, cases: CaseRepoDep, photos: PhotoRepoDep
) -> PhotoList:
    """List a work order's photos (a crew: only of its own orders)."""
    await _order(work_order_id, who, cases)
    items = await photos.of_work_order(work_order_id)
    return PhotoList(items=items, count=len(items))


@router.get("/alerts/{alert_id}/photos", response_model=PhotoList)
async def alert_photos(
    alert_id: str, who: Reader, cases: CaseRepoDep, photos: PhotoRepoDep
) -> PhotoList:
    """List the photos documenting an alert (a crew: only those of its own work orders)."""
    _may_see(who)
    items = await photos.of_alert(alert_id)
    if who.role is Role.CREW:
        own = {o.id for o in await cases.work_orders(alert_id=alert_id, assignee=who.name)}
        items = [p for p in items if p.work_order_id in own]
    return PhotoList(items=items, count=len(items))


async def _photo(photo_id: int, who: Principal, cases: CaseRepoDep, photos: PhotoRepoDep) -> Photo:
    _may_see(who)
    photo = await photos.get(photo_id)
    if photo is None:
        raise HTTPException(status_code=404, detail=f"no photo {photo_id}")
    if who.role is Role.CREW:
        order = await cases.work_order(photo.work_order_id)
        if order is None or order.assignee != who.name:
            raise HTTPException(status_code=403, detail="not a photo of your work orders")
    return photo


async def _read(files: PhotoFiles, photo: Photo) -> bytes:
    """Return a photo's bytes; 404 naming the hash when the photo store has lost the file."""
    try:
        return await asyncio.to_thread(files.read, photo.sha256)
    except FileNotFoundError:
        detail = f"the photo store has no file {photo.sha256} (photo {photo.id})"
        raise HTTPException(status_code=404, detail=detail) from None


def _image(data: bytes, media_type: str, photo: Photo) -> Response:
    # A photo never changes under its id: the browser may keep it.
    headers = {"Cache-Control": "private, max-age=86400", "X-Photo-SHA256": photo.sha256}
    return Response(content=data, media_type=media_type, headers=headers)


@router.get(
    "/photos/{photo_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "No such photo, or its file is missing from the photo store"},
    },
)
async def photo_file(
    photo_id: PhotoId,
    who: Reader,
    cases: CaseRepoDep,
    photos: PhotoRepoDep,
    files: PhotoFilesDep,
) -> Response:
    """Return the photo as uploaded, byte for byte."""
    photo = await _photo(photo_id, who, cases, photos)
    return _image(await _read(files, photo), photo.media_type, photo)


@router.get(
    "/photos/{photo_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}},
        404: {"description": "No such photo, none that can be shown small (HEIC), or no file"},
    },
)
async def photo_thumbnail(
    photo_id: PhotoId,
    who: Reader,
    cases: CaseRepoDep,
    photos: PhotoRepoDep,
    files: PhotoFilesDep,
) -> Response:
    """Return a small JPEG of the photo, for lists (none for HEIC, which Pillow cannot read)."""
    photo = await _photo(photo_id, who, cases, photos)
    if photo.width is None:
        raise HTTPException(status_code=404, detail=f"no thumbnail of a {photo.media_type}")
    data = await _read(files, photo)
    return _image(await asyncio.to_thread(thumbnail, data), "image/jpeg", photo)
