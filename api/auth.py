"""Who is asking: bearer tokens (header or cookie), what each role may do, 401 and 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.deps import SettingsDep, UserRepoDep
from meterguard.roles import Role

#: The cookie the web pages carry the token in (EventSource cannot send headers).
SESSION_COOKIE = "mg_token"


READERS = frozenset(Role)
OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Principal:
    """The user behind a request (or the anonymous viewer where the config allows one)."""

    name: str
    role: Role
    authenticated: bool
    #: The language the user chose for the pages; None: not chosen (or anonymous).
    language: str | None = None


#: Methods that change nothing: the only ones a cookie alone may authorise.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def bearer_token(request: Request) -> str | None:
    """Return the token of the Authorization header, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def request_token(request: Request) -> str | None:
    """Return the token a request carries: its header, or the cookie for a safe method."""
    header_token = bearer_token(request)
    if header_token is not None:
        return header_token
    # A browser sends the cookie with any site's forged form post (CSRF); writes must
    # name the token in the Authorization header, which another site cannot set.
    if request.method in SAFE_METHODS:
        return request.cookies.get(SESSION_COOKIE) or None
    return None


def unauthorized(detail: str) -> HTTPException:
    """Return the 401 that asks for a bearer token."""
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_principal(
    request: Request, users: UserRepoDep, settings: SettingsDep
) -> Principal:
    """Return the caller; 401 for a wrong token, or for none where anonymity is off."""
    token = request_token(request)
    if token is not None:
        user = await users.user_for_token(token)
        if user is None:
            raise unauthorized("invalid, revoked or expired token")
        try:
            role = Role(user.role)
        except ValueError:
            raise HTTPException(status_code=403, detail=f"unknown role {user.role!r}") from None
        return Principal(name=user.name, role=role, authenticated=True, language=user.language)
    anonymous = settings.api.anonymous_role
    if anonymous is None:
        raise unauthorized("missing bearer token")
    return Principal(name="anonymous", role=Role(anonymous), authenticated=False)


def require(roles: frozenset[Role]) -> Callable[..., Awaitable[Principal]]:
    """Return a dependency that admits only the given roles (403 for the others)."""

    async def check(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(sorted(r.value for r in roles))
            raise HTTPException(
                status_code=403, detail=f"{principal.role.value} may not do this ({allowed} may)"
            )
        return principal

    return check


Reader = Annotated[Principal, Depends(require(READERS))]
Operator = Annotated[Principal, Depends(require(OPERATORS))]
Admin = Annotated[Principal, Depends(require(ADMINS))]
AnyUser = Annotated[Principal, Depends(current_principal)]
