"""Client keys: a retried write (lost answer after COMMIT) finds its row instead of doubling it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Tables whose rows a case-work call inserts; each gets a unique client key.
KEYED_TABLES = (
    "comments",
    "assignments",
    "acknowledgements",
    "audit_log",
    "work_orders",
    "users",
)


def upgrade() -> None:
    """Add a nullable client_key with a unique index to every keyed table."""
    for table in KEYED_TABLES:
        op.add_column(table, sa.Column("client_key", sa.String(64)))
        op.create_index(f"{table}_client_key", table, ["client_key"], unique=True)


def downgrade() -> None:
    """Drop the client keys."""
    for table in KEYED_TABLES:
        op.drop_index(f"{table}_client_key", table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("client_key")
