"""Alerts keep their summary as a message key and figures; users keep their language.

`alerts.summary_message` (JSON, null for alerts stored before) lets the API render a
summary in each reader's language beside the English `summary`; `users.language` (a
BCP 47 tag such as `zh-CN`, null: not chosen) is the language a user picked in the pages.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable alerts.summary_message and users.language."""
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("summary_message", sa.JSON))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(16)))


def downgrade() -> None:
    """Drop both columns."""
    # In place, as 0005 does: a batch copy would drop tables others point at.
    op.drop_column("users", "language")
    op.drop_column("alerts", "summary_message")
