"""Checking a crew's photo: time to judge and decode it whole, to hash and keep it, to thumb it.

A 12-megapixel photo (4000 x 3000, as a phone's main camera takes) of camera-like noise
in each accepted format Pillow decodes, best of --rounds; the HTTP upload adds the body's
transfer on top.

Usage: .venv/bin/python bench/photo_check.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from api.photo_check import check_photo, thumbnail
from meterguard.stores.photofiles import PhotoFiles

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def photo(fmt: str) -> bytes:
    """Return a 12 MP photo of smooth gradients with sensor-like noise, encoded in fmt."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:3000, 0:4000]
    base = np.stack([x / 16, y / 12, (x + y) / 28], axis=-1) % 256
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, quality=90)
    return out.getvalue()


def best_ms(rounds: int, work: Callable[[], object]) -> float:
    """Return the best time of `rounds` runs of work, in ms."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    """Time each step for each format."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    print(f"{platform.machine()}, Python {platform.python_version()}, Pillow {PIL.__version__}")
    print("| format | bytes | check (decode whole) | hash and keep | thumbnail |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, media_type in FORMATS.items():
            data = photo(fmt)
            check = best_ms(rounds, partial(check_photo, data, media_type))
            # Each round keeps the photo in an empty store: hashed, written, synced, renamed.
            stores = iter(PhotoFiles(Path(tmp) / f"{fmt}-{k}") for k in range(rounds))
            keep = best_ms(rounds, lambda: next(stores).put(data))  # noqa: B023
            thumb = best_ms(rounds, partial(thumbnail, data))
            print(f"| {fmt} | {len(data):,} | {check:.0f} ms | {keep:.1f} ms | {thumb:.0f} ms |")


if __name__ == "__main__":
    main()
