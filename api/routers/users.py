"""Users: who am I, and (for admins) new users with their API tokens."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Admin, AnyUser
from api.deps import UserRepoDep
from meterguard.roles import Role
from meterguard.stores.alertdb import UserExistsError

router = APIRouter(prefix="/api", tags=["users"])


class Me(BaseModel):
    """The caller."""

    name: str
    role: Role
    authenticated: bool
    language: str | None = Field(
        default=None, description="The language the user chose (PUT /api/me/language)."
    )


class UserIn(BaseModel):
    """A new user; names are unique whatever their case (`ADMIN` beside `admin` is a 409)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role


class NewUser(BaseModel):
    """A created user and its token, shown this once."""

    name: str
    role: Role
    token: str


@router.get("/me", response_model=Me)
async def me(who: AnyUser) -> Me:
    """Return who the caller is."""
    return Me(name=who.name, role=who.role, authenticated=who.authenticated, language=who.language)


@router.post(
    "/users",
    response_model=NewUser,
    status_code=201,
    responses={409: {"description": "Name taken, in this case or another"}},
)
async def create_user(body: UserIn, who: Admin, users: UserRepoDep) -> NewUser:
    """Create a user and return its API token (stored hashed; shown only now)."""
    try:
        user, token = await users.create_user(body.name, body.role.value, created_by=who.name)
    except UserExistsError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return NewUser(name=user.name, role=Role(user.role), token=token)
