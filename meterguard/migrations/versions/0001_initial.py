"""Alerts with history, comments, assignments, acknowledgements, audit, work orders, users.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the first schema."""
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("meter", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("phase", sa.Integer),
        sa.Column("start", sa.Float, nullable=False),
        sa.Column("end_ts", sa.Float),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("estimated_kwh_lost", sa.Float, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("acknowledged_by", sa.String(100)),
        sa.Column("acknowledged_at", sa.Float),
        sa.Column("assignee", sa.String(100)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index(
        "alerts_one_active",
        "alerts",
        ["meter", "kind"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )
    op.create_index("alerts_start", "alerts", ["start"])
    op.create_table(
        "alert_history",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("data_ts", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.Column("alert", sa.JSON, nullable=False),
        sa.UniqueConstraint("alert_id", "type", "data_ts", name="alert_history_once"),
    )
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("comments_alert", "comments", ["alert_id"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("assignee", sa.String(100), nullable=False),
        sa.Column("assigned_by", sa.String(100), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("assignments_alert", "assignments", ["alert_id"])
    op.create_table(
        "acknowledgements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("acknowledgements_alert", "acknowledgements", ["alert_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("alert_id", sa.String(200)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("audit_log_alert", "audit_log", ["alert_id"])
    op.create_table(
        "work_orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("assignee", sa.String(100)),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(30)),
        sa.Column("outcome_note", sa.Text, nullable=False),
        sa.Column("closed_by", sa.String(100)),
    )
    op.create_index("work_orders_alert", "work_orders", ["alert_id"])
    op.create_index("work_orders_status", "work_orders", ["status"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )


def downgrade() -> None:
    """Drop the first schema."""
    for table in (
        "tokens",
        "users",
        "work_orders",
        "audit_log",
        "acknowledgements",
        "assignments",
        "comments",
        "alert_history",
        "alerts",
    ):
        op.drop_table(table)
