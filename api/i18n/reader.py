"""The request's language, as a FastAPI dependency: setting, Accept-Language, English."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.auth import Principal, current_principal, request_token
from api.deps import UserRepoDep
from api.i18n.negotiate import choose_language

#: The cookie the pages keep a visitor's choice in (a signed-in user's is on the record).
LANGUAGE_COOKIE = "mg_lang"


def _choose(request: Request, stored: str | None) -> str:
    setting = stored or request.cookies.get(LANGUAGE_COOKIE)
    return choose_language(setting, request.headers.get("accept-language"))


async def reader_language(
    request: Request, who: Annotated[Principal, Depends(current_principal)]
) -> str:
    """Return the language of a request that names its reader (or an anonymous viewer)."""
    return _choose(request, who.language)


async def any_language(request: Request, users: UserRepoDep) -> str:
    """Return the language of any request: a missing or wrong token just has no setting."""
    token = request_token(request)
    user = None if token is None else await users.user_for_token(token)
    return _choose(request, None if user is None else user.language)


ReaderLanguage = Annotated[str, Depends(reader_language)]
AnyLanguage = Annotated[str, Depends(any_language)]
