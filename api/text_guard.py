"""Refuse NUL characters in requests: no database text column can hold them (PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

MESSAGE = "text with a NUL character (\\u0000) is not accepted"


def _nul_at(value: Any, at: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """Return where in a parsed JSON value a NUL is, or None."""
    if isinstance(value, str):
        return at if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_at(key, at) or _nul_at(item, (*at, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, (*at, index))
            if found is not None:
                return found
    return None


def _refused(loc: tuple[str | int, ...]) -> RequestValidationError:
    # The shape of every other 422, so clients and the OpenAPI schema see one format.
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": MESSAGE}])


async def refuse_nul(request: Request) -> None:
    """Answer 422 for a NUL in the path, the query or a JSON body, before any handler runs."""
    if "\x00" in request.url.path:
        raise _refused(("path",))
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise _refused(("query", key))
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    body = await request.body()  # cached: the handler reads the same bytes
    # Cheap test first; only a body that may hold one is parsed to be sure.
    if b"\\u0000" not in body.lower() and b"\x00" not in body:
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return  # not JSON: the handler's own validation answers
    found = _nul_at(parsed, ("body",))
    if found is not None:
        raise _refused(found)
