"""User names are unique whatever their case: `ADMIN` cannot stand beside `admin`.

A unique index on lower(name) lets the database itself refuse the second one, on SQLite
and PostgreSQL alike (user names are ASCII, where both lower() agree). Users that already
differ only in case keep working: the oldest keeps its name, each later one is renamed
`<name>-<id>`, and the rename is written to the audit log, with its tokens untouched.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEX = "users_name_any_case"
#: users.name is VARCHAR(100).
NAME_LENGTH = 100

_users = sa.table("users", sa.column("id", sa.Integer), sa.column("name", sa.String))
_audit = sa.table(
    "audit_log",
    sa.column("at", sa.Float),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("alert_id", sa.String),
    sa.column("detail", sa.JSON),
)


def _free_name(name: str, user_id: int, taken: set[str]) -> str:
    """Return `<name>-<id>` (shortened to fit, numbered on) that no user has in any case."""
    for attempt in range(1, 1000):
        suffix = f"-{user_id}" if attempt == 1 else f"-{user_id}-{attempt}"
        candidate = name[: NAME_LENGTH - len(suffix)] + suffix
        if candidate.lower() not in taken:
            return candidate
    raise RuntimeError(f"no free name for user {user_id}")  # pragma: no cover


def upgrade() -> None:
    """Rename later users whose names differ only in case, then index lower(name)."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_users.c.id, _users.c.name, sa.func.lower(_users.c.name)).order_by(_users.c.id)
    ).all()
    taken = {folded for _, _, folded in rows}
    seen: set[str] = set()
    for user_id, name, folded in rows:
        if folded not in seen:
            seen.add(folded)
            continue
        new = _free_name(name, user_id, taken)
        taken.add(new.lower())
        conn.execute(sa.update(_users).where(_users.c.id == user_id).values(name=new))
        conn.execute(
            sa.insert(_audit).values(
                at=time.time(),
                actor=f"migration {revision}",
                action="user_rename",
                alert_id=None,
                detail={"from": name, "to": new, "why": "names are unique whatever their case"},
            )
        )
    op.create_index(INDEX, "users", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    """Drop the index; renamed users keep their new names."""
    op.drop_index(INDEX, "users")
