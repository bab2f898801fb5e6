"""Refuse text no store can hold: NUL characters (PostgreSQL) and lone UTF-16 surrogates.

A lone surrogate (a JSON escape from D800 to DFFF without its pair) decodes into a Python
string that cannot be written as UTF-8: stored, it fails in the database driver; echoed in
an error, it fails in the response. Either was a 500. Both characters are refused with the
usual 422 before any handler runs, wherever they are: the path, the query, a JSON body's
keys or values.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

NUL_MESSAGE = "text with a NUL character (\\u0000) is not accepted"
SURROGATE_MESSAGE = "text with a lone UTF-16 surrogate (\\ud800-\\udfff) is not accepted"
#: What the OpenAPI schema says of every request string: no NUL. Lone surrogates are refused
#: too, but no schema pattern can name them (the validators' regex engines hold Unicode
#: scalar values only), and a JSON text with one is not well-formed Unicode to begin with.
STORABLE_PATTERN = "^[^\\x00]*$"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: The JSON escapes that can stand for these characters, for a cheap test of the raw body.
_ESCAPES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def problem(text: str) -> str | None:
    """Say why a string cannot be stored, or None if it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return NUL_MESSAGE if found.group() == "\x00" else SURROGATE_MESSAGE


def _found_in(value: Any, at: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str] | None:
    """Return where in a parsed JSON value unstorable text is, and why, or None."""
    if isinstance(value, str):
        reason = problem(value)
        return None if reason is None else (at, reason)
    if isinstance(value, dict):
        for key, item in value.items():
            reason = problem(key)
            if reason is not None:
                return at, reason
            found = _found_in(item, (*at, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _found_in(item, (*at, index))
            if found is not None:
                return found
    return None


def refused(loc: tuple[str | int, ...], message: str) -> RequestValidationError:
    """Return a 422 in the shape of every other, so clients and the schema see one format."""
    # The location is made storable too: it is echoed in the answer.
    safe = tuple(printable(p) if isinstance(p, str) else p for p in loc)
    return RequestValidationError([{"type": "value_error", "loc": safe, "msg": message}])


def printable(text: str) -> str:
    """Return text that can be written as UTF-8: lone surrogates as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def refuse_unstorable_text(request: Request) -> None:
    """Answer 422 for a NUL or lone surrogate in the path, the query or a JSON body."""
    reason = problem(request.url.path)
    if reason is not None:
        raise refused(("path",), reason)
    for key, value in request.query_params.multi_items():
        reason = problem(key) or problem(value)
        if reason is not None:
            raise refused(("query", key), reason)
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    body = await request.body()  # cached: the handler reads the same bytes
    # Cheap test first; only a body that may hold one is parsed to be sure.
    if b"\x00" not in body and _ESCAPES.search(body) is None:
        return
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: the handler's own validation answers
    found = _found_in(parsed, ("body",))
    if found is not None:
        raise refused(*found)
