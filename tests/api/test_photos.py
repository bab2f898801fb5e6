"""Photos: crews upload to their own work orders, operators see them, bad uploads are refused."""

import hashlib
import io
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from meterguard.model import AlertKind, Meter
from meterguard.runtime import Runtime
from tests.api.control_room import control_room as signed_in
from tests.api.control_room import open_alert

ONSET = 1_767_225_600.0
#: The file type box of an AVIF photo: an ISO base media file, but not HEIC.
AVIF = b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + bytes(64)
Room = tuple[httpx.AsyncClient, dict[str, str], Runtime]


def jpeg(colour: str = "red", taken: str | None = "2026:01:01 09:30:05") -> bytes:
    """A small JPEG as a phone makes it, with the camera's time in its EXIF if given."""
    image = Image.new("RGB", (64, 48), colour)
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken
        exif.get_ifd(0x8769)[0x9011] = "+08:00"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), "blue").save(out, fmt)
    return out.getvalue()


def bomb() -> bytes:
    """A tiny PNG whose header claims 60000 x 60000 pixels (a decompression bomb)."""
    data = bytearray(encoded("PNG"))
    ihdr = 8 + 4  # after the signature and the chunk's length
    data[ihdr + 4 : ihdr + 12] = (60_000).to_bytes(4, "big") * 2
    data[ihdr + 17 : ihdr + 21] = zlib.crc32(bytes(data[ihdr : ihdr + 17])).to_bytes(4, "big")
    return bytes(data)


def _as(tokens: dict[str, str], name: str, media_type: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tokens[name]}"}
    if media_type is not None:
        headers["Content-Type"] = media_type
    return headers


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    meters = [Meter(id=m, service="3p4w", nominal_v=230, transformer="T1") for m in ("M1", "M2")]
    async with signed_in(tmp_path, meters) as (client, tokens, runtime):
        _, tokens["cleo"] = await runtime.users.create_user("cleo", "crew")
        for meter, crew in (("M1", "carl"), ("M2", "cleo")):
            alert = await open_alert(runtime, meter, AlertKind.BYPASS, ONSET)
            await runtime.cases.create_work_order([alert.id], "olga", "check the seals", crew)
        yield client, tokens, runtime


async def _upload(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    data: bytes,
    media_type: str = "image/jpeg",
    who: str = "carl",
    order: int = 1,
    query: str = "",
) -> httpx.Response:
    return await client.post(
        f"/api/work-orders/{order}/photos{query}",
        content=data,
        headers=_as(tokens, who, media_type),
    )


async def test_a_crew_photo_is_kept_by_hash_with_who_when_where(room: Room) -> None:
    client, tokens, runtime = room
    data = jpeg()
    reply = await _upload(client, tokens, data, query="?lat=31.2304&lon=121.4737&name=seal.jpg")
    assert reply.status_code == 201, reply.text
    photo = reply.json()
    assert photo["sha256"] == hashlib.sha256(data).hexdigest()
    assert (photo["media_type"], photo["width"], photo["height"]) == ("image/jpeg", 64, 48)
    assert (photo["uploaded_by"], photo["alert_id"]) == ("carl", "M1-bypass-1767225600")
    assert (photo["latitude"], photo["longitude"]) == (31.2304, 121.4737)
    assert photo["taken_at"] == "2026-01-01T09:30:05+08:00"
    assert photo["file_name"] == "seal.jpg"
    # The bytes are kept as sent, in one file named by their hash.
    assert runtime.photo_files.read(photo["sha256"]) == data
    served = await client.get(f"/api/photos/{photo['id']}", headers=_as(tokens, "olga"))
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "image/jpeg"
    audit = await runtime.cases.audit(alert_id=photo["alert_id"])
    assert audit[0].action == "photo"
    assert audit[0].detail["sha256"] == photo["sha256"]


async def test_the_same_photo_twice_is_one_file(room: Room) -> None:
    client, tokens, runtime = room
    data = jpeg("green")
    first = (await _upload(client, tokens, data)).json()
    second = (await _upload(client, tokens, data)).json()
    assert first["id"] != second["id"]
    assert first["sha256"] == second["sha256"]
    files = [p for p in runtime.photo_files.directory.rglob("*") if p.is_file()]
    assert [f.name for f in files] == [first["sha256"]]


async def test_png_webp_and_heic_are_taken(room: Room) -> None:
    client, tokens, _ = room
    for fmt, media_type in (("PNG", "image/png"), ("WEBP", "image/webp")):
        reply = await _upload(client, tokens, encoded(fmt), media_type)
        assert reply.status_code == 201, reply.text
        assert reply.json()["media_type"] == media_type
    # The file type box of an iPhone photo; Pillow cannot decode HEIC, so it is kept as sent.
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    reply = await _upload(client, tokens, heic, "")
    assert reply.status_code == 201, reply.text
    assert (reply.json()["media_type"], reply.json()["width"]) == ("image/heic", None)


@pytest.mark.parametrize(
    ("data", "media_type", "status", "reason"),
    [
        (b"seal 0412 cut, see notes", "image/jpeg", 422, "not_an_image"),
        (jpeg()[:300], "image/jpeg", 422, "not_an_image"),
        (encoded("GIF"), "image/gif", 415, "unsupported_type"),
        (encoded("GIF"), "application/octet-stream", 415, "unsupported_type"),
        (jpeg(), "application/pdf", 415, "unsupported_type"),
        (jpeg(), "image/png", 415, "type_mismatch"),
        (bomb(), "image/png", 422, "not_an_image"),  # refused before decoding
        (AVIF, "", 415, "unsupported_type"),
    ],
    ids=["text", "truncated", "gif", "gif-unlabelled", "pdf-label", "mislabelled", "bomb", "avif"],
)
async def test_bad_uploads_get_a_clear_error_and_a_count(
    room: Room, data: bytes, media_type: str, status: int, reason: str
) -> None:
    client, tokens, runtime = room
    reply = await _upload(client, tokens, data, media_type)
    assert reply.status_code == status, reply.text
    assert reply.json()["detail"]
    assert runtime.photos_refused == {reason: 1}
    metrics = (await client.get("/metrics")).text
    assert f'meterguard_photos_refused_total{{reason="{reason}"}} 1.0' in metrics
    assert (await runtime.photos.of_work_order(1)) == []


async def test_a_photo_above_the_limit_is_413(room: Room) -> None:
    client, tokens, runtime = room
    runtime.settings.api.photo_max_mb = 0.001
    reply = await _upload(client, tokens, jpeg() + bytes(1000))
    assert reply.status_code == 413
    assert runtime.photos_refused == {"too_large": 1}
    assert not runtime.photo_files.directory.exists()


async def test_a_crew_never_sees_another_crews_photos(room: Room) -> None:
    client, tokens, _ = room
    mine = (await _upload(client, tokens, jpeg("white"), who="carl")).json()
    theirs = (await _upload(client, tokens, jpeg("black"), who="cleo", order=2)).json()
    carl = _as(tokens, "carl")
    assert (await client.get(f"/api/photos/{mine['id']}", headers=carl)).status_code == 200
    for url in (
        f"/api/photos/{theirs['id']}",
        f"/api/photos/{theirs['id']}/thumbnail",
        "/api/work-orders/2/photos",
    ):
        assert (await client.get(url, headers=carl)).status_code == 403, url
    listed = await client.get(f"/api/alerts/{theirs['alert_id']}/photos", headers=carl)
    assert listed.json()["items"] == []
    # Nor may a crew attach photos to another crew's order.
    assert (await _upload(client, tokens, jpeg(), who="carl", order=2)).status_code == 403
    # A viewer sees none; the operator sees both.
    viewer = _as(tokens, "vic")
    assert (await client.get(f"/api/photos/{mine['id']}", headers=viewer)).status_code == 403
    olga = _as(tokens, "olga")
    for photo in (mine, theirs):
        listed = await client.get(f"/api/alerts/{photo['alert_id']}/photos", headers=olga)
        assert [p["id"] for p in listed.json()["items"]] == [photo["id"]]


async def test_a_thumbnail_is_a_small_jpeg(room: Room) -> None:
    client, tokens, _ = room
    big = io.BytesIO()
    Image.new("RGB", (1600, 1200), "orange").save(big, "PNG")
    photo = (await _upload(client, tokens, big.getvalue(), "image/png")).json()
    reply = await client.get(f"/api/photos/{photo['id']}/thumbnail", headers=_as(tokens, "olga"))
    assert reply.status_code == 200
    with Image.open(io.BytesIO(reply.content)) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == 320


async def test_a_closed_order_takes_no_more_crew_photos(room: Room) -> None:
    client, tokens, _ = room
    done = await client.patch(
        "/api/work-orders/1",
        json={"status": "done", "outcome": "no_fault_found"},
        headers=_as(tokens, "carl"),
    )
    assert done.status_code == 200
    assert (await _upload(client, tokens, jpeg())).status_code == 409
    # The office may still file one (a photo handed in later).
    assert (await _upload(client, tokens, jpeg(), who="olga")).status_code == 201


async def test_a_photo_documents_only_an_alert_its_order_covers(room: Room) -> None:
    client, tokens, _ = room
    reply = await _upload(client, tokens, jpeg(), query="?alert_id=M2-bypass-1767225600")
    assert reply.status_code == 422
    reply = await _upload(client, tokens, jpeg(), query="?lat=31.2")
    assert reply.status_code == 422


async def test_a_photo_whose_file_was_lost_is_a_404_that_names_it(room: Room) -> None:
    client, tokens, runtime = room
    photo = (await _upload(client, tokens, jpeg("gray"))).json()
    runtime.photo_files.path(photo["sha256"]).unlink()
    for url in (f"/api/photos/{photo['id']}", f"/api/photos/{photo['id']}/thumbnail"):
        reply = await client.get(url, headers=_as(tokens, "olga"))
        assert reply.status_code == 404
        assert photo["sha256"] in reply.json()["detail"]
