"""Alerts keep `raised`: the data time of the reading at which each was raised.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add a nullable alerts.raised, filled for existing rows from their recorded open."""
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("raised", sa.Float))
    # An open event's data time is the reading that raised the alert. A row without a
    # recorded open (written by hand) takes its start: the earliest it can have been raised.
    op.execute(
        "UPDATE alerts SET raised = COALESCE("
        "(SELECT MIN(h.data_ts) FROM alert_history h"
        " WHERE h.alert_id = alerts.id AND h.type = 'open'),"
        " start)"
    )


def downgrade() -> None:
    """Drop alerts.raised."""
    # In place (SQLite 3.35+ drops a column itself): a batch copy of the table would have to
    # drop the table the history, comments and work orders point at.
    op.drop_column("alerts", "raised")
