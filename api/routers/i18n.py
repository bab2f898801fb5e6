"""Languages: the pages' messages in the reader's language, and the user's choice of one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict

from api.auth import AnyUser
from api.deps import UserRepoDep
from api.i18n.catalogue import LANGUAGES, LanguageCode, messages
from api.i18n.reader import LANGUAGE_COOKIE, AnyLanguage

router = APIRouter(prefix="/api", tags=["languages"])

#: A year: the choice outlives the browser session.
COOKIE_MAX_AGE_S = 365 * 86400


class Language(BaseModel):
    """A language the pages speak."""

    code: str
    name: str


class Messages(BaseModel):
    """The reader's language and every message of the pages in it."""

    language: str
    languages: list[Language]
    messages: dict[str, str]


class LanguageChoice(BaseModel):
    """A language for the pages, or null to follow the browser's Accept-Language."""

    model_config = ConfigDict(extra="forbid")

    language: LanguageCode | None


@router.get("/i18n", response_model=Messages)
async def page_messages(language: AnyLanguage) -> Messages:
    """Return the reader's language and the pages' messages in it (open: sign-in needs it)."""
    return Messages(
        language=language,
        languages=[Language(code=code, name=name) for code, name in LANGUAGES.items()],
        messages=dict(messages(language)),
    )


@router.put("/me/language", response_model=LanguageChoice)
async def choose_language(
    who: AnyUser,
    users: UserRepoDep,
    response: Response,
    body: Annotated[LanguageChoice, Body()],
) -> LanguageChoice:
    """Keep the caller's language: on the user record when signed in, in a cookie always."""
    if who.authenticated:
        await users.set_language(who.name, body.language)
    if body.language is None:
        response.delete_cookie(LANGUAGE_COOKIE, path="/")
    else:
        response.set_cookie(
            LANGUAGE_COOKIE, body.language, max_age=COOKIE_MAX_AGE_S, path="/", samesite="strict"
        )
    return body
