"""Checking an uploaded photo: its type by its first bytes, then decoded whole by Pillow.

The declared type (the Content-Type a phone sends) is only a hint: what counts is what
the bytes are. JPEG, PNG and WebP are decoded to the last pixel, so a truncated or
forged file is refused; HEIC, which Pillow cannot decode by itself, is recognised by its
ISO base media file box and kept as sent. Nothing is changed in the file: the bytes kept
are the bytes the crew's phone sent, so their SHA-256 stays the photo's fingerprint.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from PIL import Image, ImageOps, UnidentifiedImageError

#: The types a crew may upload, by the name Pillow gives their format.
PILLOW_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
HEIC = "image/heic"
ACCEPTED_TYPES = frozenset({*PILLOW_FORMATS.values(), HEIC})
#: HEIF brands of a HEVC-coded image (ISO/IEC 23008-12); "mif1" alone could be AVIF.
HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
#: Declared types that say nothing of the content (a phone that does not know HEIC).
UNSPECIFIC_TYPES = frozenset({"", "application/octet-stream"})
#: More pixels than any phone camera takes (some 200 MP): a decompression bomb.
MAX_PIXELS = 250_000_000
#: The longer side of a thumbnail, in pixels.
THUMBNAIL_SIDE = 320

# EXIF tags (EXIF 2.32): the IFD that holds the capture times, and the times themselves.
_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_DATE_TIME = 0x0132


class PhotoRefusedError(ValueError):
    """An upload that is not a photo meterguard keeps; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        #: The counter's label: too_large, not_an_image, unsupported_type, type_mismatch.
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PhotoFacts:
    """What the bytes are: type, size in pixels (None for HEIC), camera time if any."""

    media_type: str
    width: int | None
    height: int | None
    taken_at: str | None


def too_large(size: int, limit: int) -> PhotoRefusedError:
    """Return the refusal of an upload above the size limit (413)."""
    return PhotoRefusedError(
        413, "too_large", f"the photo has {size} bytes or more; at most {limit}"
    )


def sniff(data: bytes) -> str | None:
    """Return the image type the first bytes name (any image format), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        box_size = int.from_bytes(data[:4], "big")
        brands = {data[8:12]} | {
            data[i : i + 4] for i in range(16, min(box_size, len(data), 64), 4)
        }
        if brands & HEIC_BRANDS:
            return HEIC
        if b"avif" in brands or b"avis" in brands:
            return "image/avif"
        return None
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"BM"):
        return "image/bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    return None


def check_photo(data: bytes, declared: str) -> PhotoFacts:
    """Return what a photo is, or raise PhotoRefusedError (415 wrong type, 422 not an image)."""
    declared = declared.split(";")[0].strip().lower()
    if declared not in UNSPECIFIC_TYPES and declared not in ACCEPTED_TYPES | {"image/heif"}:
        raise PhotoRefusedError(
            415, "unsupported_type", f"{declared} is not accepted; send JPEG, PNG, WebP or HEIC"
        )
    found = sniff(data)
    if found is None:
        raise PhotoRefusedError(422, "not_an_image", "the file is not an image (its first bytes)")
    if found not in ACCEPTED_TYPES:
        raise PhotoRefusedError(
            415, "unsupported_type", f"the file is {found}; send JPEG, PNG, WebP or HEIC"
        )
    if declared not in UNSPECIFIC_TYPES and declared.replace("heif", "heic") != found:
        raise PhotoRefusedError(
            415, "type_mismatch", f"the file is {found} but was sent as {declared}"
        )
    if found == HEIC:
        return PhotoFacts(HEIC, None, None, None)
    return _decode(data, found)


def _decode(data: bytes, media_type: str) -> PhotoFacts:
    """Decode the whole image with Pillow; 422 if it is truncated, damaged or a bomb."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if PILLOW_FORMATS.get(image.format or "") != media_type:
                raise PhotoRefusedError(
                    422, "not_an_image", f"the file is not a valid {media_type}"
                )
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise PhotoRefusedError(422, "not_an_image", f"{width}x{height} pixels is too many")
            taken_at = exif_time(image.getexif())
            image.load()
    except PhotoRefusedError:
        raise
    except Image.DecompressionBombError:
        raise PhotoRefusedError(422, "not_an_image", "more pixels than any camera takes") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoRefusedError(
            422, "not_an_image", f"the file cannot be decoded as {media_type}: {exc}"
        ) from None
    return PhotoFacts(media_type, width, height, taken_at)


def exif_time(exif: Image.Exif) -> str | None:
    """Return when the camera took the photo, as ISO 8601 (with its UTC offset if given)."""
    inner = exif.get_ifd(_EXIF_IFD)
    raw = inner.get(_DATE_TIME_ORIGINAL) or exif.get(_DATE_TIME)
    if not isinstance(raw, str):
        return None
    try:
        stamp = datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None  # a camera's clock that was never set writes "0000:00:00 00:00:00"
    offset = inner.get(_OFFSET_TIME_ORIGINAL)
    suffix = offset.strip("\x00 ") if isinstance(offset, str) and len(offset) >= 6 else ""
    return stamp.isoformat() + suffix


def thumbnail(data: bytes) -> bytes:
    """Return a JPEG of at most THUMBNAIL_SIDE pixels a side, turned as the camera was held."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        upright.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        upright.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()
