"""Sessions: password login to an expiring bearer token, and logout that revokes it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AnyUser, bearer_token, unauthorized
from api.deps import SettingsDep, UserRepoDep
from api.login_guard import LoginRefusedError, guard_of
from meterguard.roles import Role

router = APIRouter(prefix="/api", tags=["users"])


class LoginIn(BaseModel):
    """A name (any case) and password."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class Session(BaseModel):
    """A bearer token and when it stops working."""

    token: str
    expires_at: float = Field(description="Unix time after which the token is a 401.")
    name: str
    role: Role


LOGIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong name or password"},
    429: {
        "description": "Too many failed logins for this name or from this address; the"
        " password was not checked",
        "headers": {
            "Retry-After": {
                "description": "Seconds until an attempt may be made again.",
                "schema": {"type": "integer"},
            }
        },
    },
}


@router.post("/login", response_model=Session, responses=LOGIN_RESPONSES)
async def login(
    body: LoginIn, request: Request, users: UserRepoDep, settings: SettingsDep
) -> Session:
    """Trade a name and password for a bearer token that expires ([api] token_hours)."""
    api = settings.api
    guard = guard_of(request.app, api)
    address = request.client.host if request.client is not None else None
    try:
        # Names log in whatever their case, so failures count against the name in any case.
        with guard.attempt(body.name.lower(), address) as attempt:
            found = await users.login(body.name, body.password, api.token_hours * 3600.0)
            attempt.succeeded = found is not None
    except LoginRefusedError as exc:
        raise HTTPException(
            status_code=429,
            detail="too many failed logins; try again later",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    if found is None:
        raise unauthorized("wrong name or password")
    user, token, expires_at = found
    return Session(token=token, expires_at=expires_at, name=user.name, role=Role(user.role))


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, who: AnyUser, users: UserRepoDep) -> Response:
    """Revoke the token the request carries (in its Authorization header)."""
    token = bearer_token(request)
    if token is None or not who.authenticated:
        raise unauthorized("logout needs the token in the Authorization header")
    if not await users.revoke_token(token):
        raise HTTPException(status_code=401, detail="token already revoked")
    return Response(status_code=204)
