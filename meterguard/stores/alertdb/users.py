"""The user repository: users, their passwords, API tokens and login tokens."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from meterguard.errors import MeterguardError
from meterguard.passwords import check_password, hash_password
from meterguard.roles import ROLE_NAMES
from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.core import Database, Row, new_key
from meterguard.stores.records import User

#: How long a valid token's user is remembered before the database is asked again.
TOKEN_CACHE_S = 5.0

#: What a user name may hold: ASCII, so that SQLite's and PostgreSQL's lower() agree and
#: names are unique whatever their case on both (migration 0006).
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


class UserExistsError(MeterguardError, ValueError):
    """A user of that name exists already, maybe in another case (`existing` is its name)."""

    def __init__(self, name: str, existing: str) -> None:
        self.name = name
        self.existing = existing
        same = "" if existing == name else " (names are unique whatever their case)"
        super().__init__(f"a user named {existing!r} exists{same}")


def same_name(column: sa.ColumnElement[str], name: str) -> sa.ColumnElement[bool]:
    """Match a user name whatever its case, as the unique index on lower(name) does."""
    if not name.isascii():
        # No user has such a name; and Python's lower() folds some letters to ASCII.
        return sa.false()
    return sa.func.lower(column) == name.lower()


#: Past this many remembered tokens the memory starts afresh.
TOKEN_CACHE_SIZE = 10_000


def _user(row: Row) -> User:
    data = dict(row)
    data["has_password"] = data.pop("password_hash", None) is not None
    return User.model_validate(data)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqlUserRepository:
    """Users and tokens in the alert database; a valid token's user is remembered briefly."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: Token digest -> its user and until when that answer holds (user_for_token).
        self._token_cache: dict[str, tuple[User, float]] = {}
        #: Bumped around every revocation; a lookup overlapping one does not cache.
        self._revocations = 0

    async def create_user(
        self,
        name: str,
        role: str = "operator",
        *,
        created_by: str = "cli",
        password: str | None = None,
    ) -> tuple[User, str]:
        """Create a user and return it with a new API token (shown only this once).

        `created_by` is the actor the audit log records (the admin behind an API call).
        Raises ValueError for a role meterguard does not know or a name it does not take
        (1-100 of A-Z a-z 0-9 _ . @ -), UserExistsError for a name taken in any case.
        """
        if role not in ROLE_NAMES:
            raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLE_NAMES)}")
        if USER_NAME.fullmatch(name) is None:
            raise ValueError(
                f"user name {name!r}: use 1 to 100 of the letters A-Z, a-z, digits and _ . @ -"
            )
        token = secrets.token_urlsafe(32)
        token_hash = _hash_token(token)
        now = self._db.clock()
        key = new_key(None)
        password_hash = (
            None if password is None else await asyncio.to_thread(hash_password, password)
        )

        async def write(conn: AsyncConnection) -> sa.RowMapping:
            values = {"name": name, "role": role, "created_at": now, "password_hash": password_hash}
            row, new = await self._db.insert_once(conn, t.users, key, values)
            if new:
                await conn.execute(
                    sa.insert(t.tokens).values(
                        user_id=row["id"], token_sha256=token_hash, created_at=now
                    )
                )
                detail = {"name": name, "role": role}
                await self._db.audit(conn, created_by, "user_create", None, detail, key)
            return row

        try:
            row = await self._db.run(write)
        except IntegrityError:
            # The database refused it (two creations racing included): name the holder.
            u = t.users
            taken = await self._db.fetch(sa.select(u.c.name).where(same_name(u.c.name, name)))
            if taken:
                raise UserExistsError(name, taken[0]["name"]) from None
            raise
        return _user(row), token

    async def set_password(self, name: str, password: str, *, by: str = "cli") -> None:
        """Give a user a (new) password; KeyError for an unknown user."""
        u = t.users
        password_hash = await asyncio.to_thread(hash_password, password)

        async def write(conn: AsyncConnection) -> None:
            result = await conn.execute(
                sa.update(u).where(same_name(u.c.name, name)).values(password_hash=password_hash)
            )
            if not result.rowcount:
                raise KeyError(f"no user {name!r}")
            await self._db.audit(conn, by, "password_set", None, {"name": name}, None)

        await self._db.run(write)

    async def set_language(self, name: str, language: str | None) -> None:
        """Store the language a user chose for the pages (None: let the browser say)."""
        u = t.users

        async def write(conn: AsyncConnection) -> None:
            result = await conn.execute(
                sa.update(u).where(same_name(u.c.name, name)).values(language=language)
            )
            if not result.rowcount:
                raise KeyError(f"no user {name!r}")

        await self._db.run(write)
        # The remembered users of this one's tokens carry the old language: forget them.
        folded = name.lower()
        self._token_cache = {
            digest: held
            for digest, held in self._token_cache.items()
            if held[0].name.lower() != folded
        }

    async def login(self, name: str, password: str, ttl_s: float) -> tuple[User, str, float] | None:
        """Check a password; on success return the user, a new token and its expiry time.

        The name is matched whatever its case (names are unique that way): `Olga` logs in
        as `olga`, and the user returned carries the name as it was created.
        """
        u, k = t.users, t.tokens
        rows = await self._db.fetch(sa.select(u).where(same_name(u.c.name, name)))
        stored = rows[0]["password_hash"] if rows else None
        # Checked even for an unknown name, so timing does not tell which names exist.
        if not await asyncio.to_thread(check_password, password, stored) or not rows:
            return None
        token = secrets.token_urlsafe(32)
        now = self._db.clock()
        expires_at = now + ttl_s

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                sa.insert(k).values(
                    user_id=rows[0]["id"],
                    token_sha256=_hash_token(token),
                    created_at=now,
                    expires_at=expires_at,
                )
            )

        await self._db.run(write)
        return _user(rows[0]), token, expires_at

    async def user_for_token(self, token: str) -> User | None:
        """Return the user a token belongs to, or None if unknown, revoked or expired.

        A valid token is remembered for TOKEN_CACHE_S (never past its expiry), as every
        request asks: a revocation in this process takes effect at once, one in another
        process sharing the database within that time.
        """
        digest = _hash_token(token)
        now = self._db.clock()
        cached = self._token_cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        # A revocation that starts while this lookup reads must keep it from being cached.
        revocations = self._revocations
        u, k = t.users, t.tokens
        query = (
            sa.select(u, k.c.expires_at.label("token_expires_at"))
            .select_from(u.join(k, k.c.user_id == u.c.id))
            .where(
                k.c.token_sha256 == digest,
                k.c.revoked_at.is_(None),
                sa.or_(k.c.expires_at.is_(None), k.c.expires_at > now),
            )
        )
        rows = await self._db.fetch(query)
        if not rows:
            self._token_cache.pop(digest, None)
            return None
        data = dict(rows[0])
        expires_at = data.pop("token_expires_at")
        user = _user(data)
        if self._revocations != revocations:
            return user  # maybe revoked meanwhile: answer, but do not remember it
        if len(self._token_cache) >= TOKEN_CACHE_SIZE:
            self._token_cache.clear()
        until = now + TOKEN_CACHE_S
        self._token_cache[digest] = (user, until if expires_at is None else min(until, expires_at))
        return user

    async def revoke_token(self, token: str) -> bool:
        """Revoke a token; True if it was active."""
        k = t.tokens
        digest = _hash_token(token)
        self._revocations += 1
        self._token_cache.pop(digest, None)

        async def write(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                sa.update(k)
                .where(k.c.token_sha256 == digest, k.c.revoked_at.is_(None))
                .values(revoked_at=self._db.clock())
            )
            return bool(result.rowcount)

        try:
            return await self._db.run(write)
        finally:
            # A lookup that read the row before the commit may have cached it meanwhile.
            self._revocations += 1
            self._token_cache.pop(digest, None)
