"""Open the telemetry files (docs/FORMATS.md) as UTF-8 text, whatever they came as.

A file is read as UTF-8 (a byte-order mark is dropped), UTF-16 or UTF-32 with a byte-order
mark (turned into UTF-8 on the fly), and any of these gzip-compressed (recognised by its
first bytes; `NAME.gz` is read when NAME itself is missing, so a folder may hold
`readings.csv.gz`). Other
compressed or binary input, a missing file, a directory or an unreadable file is refused
with a reason a person can act on. The reason goes to an error of the caller's own type
(`fail(line, reason)`), so each reader keeps the error its callers already catch.

CSV lines are split per RFC 4180 within one line: quoted values may hold commas and doubled
quotes, never a line break, so one stray quote spoils its own line and nothing after it.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

#: Builds the caller's error from a line number (None: the file as a whole) and a reason.
Fail = Callable[[int | None, str], Exception]

#: A line longer than this is not a telemetry row: it is skipped as one bad row rather
#: than gathered in memory (a binary file may have no line break for megabytes).
MAX_LINE_BYTES = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
#: Other containers a user may hand over by mistake: named so that the error says what to do.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian mark begins with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_ENCODING_NAMES = {
    "utf-8": "UTF-8",
    "utf-16-le": "UTF-16",
    "utf-16-be": "UTF-16",
    "utf-32-le": "UTF-32",
    "utf-32-be": "UTF-32",
}


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Prefixed:
    """A stream that gives back the bytes already peeked at, then the rest of its source."""

    def __init__(self, head: bytes, rest: _Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if self._head:
            if size < 0:
                out, self._head = self._head + self._rest.read(), b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            if len(out) < size:
                out += self._rest.read(size - len(out))
            return out
        return self._rest.read(size)


class _ToUtf8:
    """UTF-16 or UTF-32 turned into UTF-8 as it is read.

    Lone surrogates and a truncated last character come through as bytes that are not
    UTF-8 (surrogates are passed through), so the line holding them is refused as not
    text, like any other undecodable line, instead of being replaced silently.
    """

    def __init__(self, source: _Readable, encoding: str) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="surrogatepass")
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        if self._done:
            return b""
        while True:
            raw = self._source.read(size)
            if not raw:
                self._done = True
                try:
                    tail = self._decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    return b"\xff"  # half a character at the end: that line is not text
                return tail.encode("utf-8", "surrogatepass")
            text = self._decoder.decode(raw)
            if text:
                return text.encode("utf-8", "surrogatepass")


class InputStream:
    """A telemetry file opened for reading as UTF-8 bytes, with how it was stored."""

    def __init__(self, path: Path, fail: Fail) -> None:
        path = locate(path)
        self.path = path
        self._fail = fail
        self.size = checked_size(path, fail)
        #: "gzip" when the file is compressed; the text encoding it was stored in.
        self.compression: str | None = None
        self.encoding = "UTF-8"
        try:
            self._file: BinaryIO = path.open("rb")
        except OSError as exc:
            raise fail(None, _os_reason(exc)) from None
        try:
            self._stream = self._layers()
        except BaseException:
            self._file.close()
            raise

    def _layers(self) -> _Readable:
        """Peek at the first bytes: unwrap gzip, drop a byte-order mark, refuse containers."""
        source: _Readable = self._file
        head = self._read(source, 16)
        if head.startswith(_GZIP_MAGIC):
            self.compression = "gzip"
            self._file.seek(0)
            source = gzip.GzipFile(fileobj=self._file, mode="rb")
            head = self._read(source, 16)
        for magic, what in _OTHER_MAGIC:
            if head.startswith(magic):
                inside = " inside the gzip stream" if self.compression else ""
                raise self._fail(1, f"not text ({what}{inside}): give the CSV text itself")
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                self.encoding = _ENCODING_NAMES[encoding]
                stream: _Readable = _Prefixed(head[len(bom) :], source)
                return stream if encoding == "utf-8" else _ToUtf8(stream, encoding)
        return _Prefixed(head, source)

    def _read(self, source: _Readable, size: int) -> bytes:
        try:
            return source.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; a stream cut short is an EOFError.
            if self.compression is not None:
                raise self._fail(None, f"broken gzip stream ({exc})") from None
            reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
            raise self._fail(None, reason) from None

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes of UTF-8 text; b"" at the end."""
        return self._read(self._stream, size)

    def bytes_read(self) -> int:
        """Return how far into the stored file (before decompression) reading is."""
        try:
            return self._file.tell()
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> InputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno == errno.EISDIR:
        return "is a directory, not a file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)"
    return f"cannot be read ({exc.strerror or exc})"


def locate(path: Path) -> Path:
    """Return the file to read for `path`: itself, or `path.gz` beside it when it is missing."""
    if not path.exists():
        compressed = path.with_name(f"{path.name}.gz")
        if compressed.is_file():
            return compressed
    return path


def checked_size(path: Path, fail: Fail) -> int:
    """Return the file's size; a missing path, a directory or a special file is refused."""
    path = locate(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise fail(None, _os_reason(exc)) from None
    if path.is_dir():
        raise fail(None, "is a directory, not a file")
    if not os.path.isfile(path):
        raise fail(None, "is not a regular file")
    return info.st_size


def open_input(path: Path, fail: Fail) -> InputStream:
    """Open a telemetry file as UTF-8 text bytes; problems go to `fail`."""
    return InputStream(path, fail)


def text_problem(line: bytes, encoding: str = "UTF-8") -> str | None:
    """Say why a line of bytes is not text (a NUL byte, invalid UTF-8), or None if it is."""
    if b"\x00" in line:
        column = line.index(b"\x00") + 1
        hint = ""
        if len(line) >= 4 and max(line[0::2].count(0), line[1::2].count(0)) * 2 >= len(line) - 1:
            # Every other byte NUL: ASCII text in UTF-16 that lost its byte-order mark.
            hint = "; UTF-16 without a byte-order mark? save it as UTF-8"
        return f"not text (NUL byte at column {column}{hint})"
    if line.isascii():
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        what = "invalid UTF-16" if encoding == "UTF-16" else f"invalid {encoding}"
        if encoding == "UTF-8":
            what = f"invalid UTF-8 at column {exc.start + 1}"
        return f"not text ({what})"
    return None


def split_csv_line(text: str) -> list[str]:
    """Split one CSV line into its values per RFC 4180; ValueError says what is malformed.

    A quoted value starts at the beginning of a field and ends with a quote followed by a
    comma or the end of the line; `""` inside it is one quote. A quote anywhere else, or a
    quote left open at the end of the line, makes the line malformed.
    """
    text = text.rstrip("\r\n")
    if '"' not in text:
        return text.split(",")
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            parts: list[str] = []
            j = i + 1
            while True:
                q = text.find('"', j)
                if q < 0:
                    raise ValueError(f"unterminated quote at column {i + 1}")
                parts.append(text[j:q])
                if q + 1 < n and text[q + 1] == '"':
                    parts.append('"')
                    j = q + 2
                    continue
                break
            fields.append("".join(parts))
            i = q + 1
            if i < n and text[i] != ",":
                raise ValueError(f"text after a closing quote at column {i + 1}")
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end]
            if '"' in value:
                column = i + value.index('"') + 1
                raise ValueError(f"quote inside an unquoted value at column {column}")
            fields.append(value)
            i = end
        if i >= n:
            return fields
        i += 1  # the comma
        if i == n:
            fields.append("")
            return fields


def read_lines(stream: InputStream, fail: Fail) -> Iterator[tuple[int, str]]:
    """Yield (line number, text without its line break) of a small file, refusing non-text.

    For files read whole and strictly (meters.csv, labels.csv, alerts.jsonl): the first
    line that is not text, or longer than MAX_LINE_BYTES, stops the read through `fail`.
    """
    number = 0
    rest = b""
    while True:
        block = stream.read(1 << 16)
        data = rest + block
        if not block:
            if data:
                yield number + 1, _line_text(data, number + 1, stream.encoding, fail)
            return
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE_BYTES:
            raise fail(number + len(lines) + 1, f"line longer than {MAX_LINE_BYTES} bytes")
        for raw in lines:
            number += 1
            yield number, _line_text(raw, number, stream.encoding, fail)


def _line_text(raw: bytes, number: int, encoding: str, fail: Fail) -> str:
    problem = text_problem(raw, encoding)
    if problem is not None:
        raise fail(number, problem)
    text = raw.decode("utf-8")
    if text.endswith("\r"):
        text = text[:-1]
    if "\r" in text:
        raise fail(number, "carriage return inside the line (lines must end in LF or CRLF)")
    return text
