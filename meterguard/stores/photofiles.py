"""The photo store: each photo's bytes in a file named by its SHA-256, one copy per hash."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

_HEX64 = re.compile(r"[0-9a-f]{64}")


class PhotoFiles:
    """Photo files under one folder: `<dir>/<first two hex digits>/<sha256>`.

    A file is written once under a temporary name and renamed into place, so a reader
    never sees half a photo and two uploads of the same photo leave one file. The files
    are never changed: the hash in the database checks them.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, sha256: str) -> Path:
        """Return where the photo with this hash is kept (ValueError for a malformed hash)."""
        if not _HEX64.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 in hex: {sha256!r}")
        return self.directory / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Keep the bytes (once per content) and return their SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest

    def read(self, sha256: str) -> bytes:
        """Return a photo's bytes (FileNotFoundError if the store has none by that hash)."""
        return self.path(sha256).read_bytes()
