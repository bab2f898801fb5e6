"""Table definitions of the alert database; the Alembic migrations create the same schema."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _client_key(table: str) -> tuple[sa.Column[str], sa.Index]:
    """Return a unique key the writer picks, so a retried insert finds its row (0002)."""
    return (
        sa.Column("client_key", sa.String(64)),
        sa.Index(f"{table}_client_key", "client_key", unique=True),
    )


#: The partial index condition: only active alerts take part in the uniqueness.
ACTIVE_ONLY = sa.text("active")

alerts = sa.Table(
    "alerts",
    metadata,
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
    # 0005: data time of the reading that raised it; written by the open, never changed.
    sa.Column("raised", sa.Float),
    # 0008: the summary as a message key and figures (a SummaryMessage); null before.
    sa.Column("summary_message", sa.JSON),
    # The database itself refuses a second active alert for one meter and kind, so two
    # processes (or a restart mid-incident) can never open a duplicate.
    sa.Index(
        "alerts_one_active",
        "meter",
        "kind",
        unique=True,
        sqlite_where=ACTIVE_ONLY,
        postgresql_where=ACTIVE_ONLY,
    ),
    sa.Index("alerts_start", "start"),
)

alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("type", sa.String(10), nullable=False),
    sa.Column("data_ts", sa.Float, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Column("alert", sa.JSON, nullable=False),
    # A replayed event (retry after a lost answer, restart) is recorded once.
    sa.UniqueConstraint("alert_id", "type", "data_ts", name="alert_history_once"),
)

comments = sa.Table(
    "comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("author", sa.String(100), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("comments_alert", "alert_id"),
    *_client_key("comments"),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("assignee", sa.String(100), nullable=False),
    sa.Column("assigned_by", sa.String(100), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("assignments_alert", "alert_id"),
    *_client_key("assignments"),
)

acknowledgements = sa.Table(
    "acknowledgements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("user", sa.String(100), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("acknowledgements_alert", "alert_id"),
    *_client_key("acknowledgements"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("alert_id", sa.String(200)),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("audit_log_alert", "alert_id"),
    *_client_key("audit_log"),
)

work_orders = sa.Table(
    "work_orders",
    metadata,
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
    # 0003: the on-site checklist (a Checklist record), how theft was done, what was recovered.
    sa.Column("checklist", sa.JSON),
    sa.Column("outcome_method", sa.String(100)),
    sa.Column("recovered_kwh", sa.Float),
    sa.Index("work_orders_alert", "alert_id"),
    sa.Index("work_orders_status", "status"),
    *_client_key("work_orders"),
)

#: The alerts a work order covers (0003); work_orders.alert_id stays the first of them.
work_order_alerts = sa.Table(
    "work_order_alerts",
    metadata,
    sa.Column("work_order_id", sa.Integer, sa.ForeignKey("work_orders.id"), primary_key=True),
    sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), primary_key=True),
    sa.Index("work_order_alerts_alert", "alert_id"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # 0004: a salted scrypt hash (meterguard.passwords), never the password; null: no login.
    sa.Column("password_hash", sa.String(200)),
    # 0008: the language the user chose for the pages (BCP 47, e.g. zh-CN); null: none.
    sa.Column("language", sa.String(16)),
    *_client_key("users"),
)

# 0006: names are unique whatever their case (on top of the exact unique constraint).
sa.Index("users_name_any_case", sa.func.lower(users.c.name), unique=True)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    # Only a hash is kept: a leaked database does not leak usable tokens.
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    # 0004: login tokens stop working then; API keys for machines have none.
    sa.Column("expires_at", sa.Float),
)

#: 0007: who polls what. One row per exclusive resource (a Modbus gateway, a DLMS source):
#: its owner holds it until expires_at, in the database server's own time (epoch s), so
#: the clocks of the processes sharing it do not matter.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("resource", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
)

#: 0009: photos crews took on site; the bytes are in the photo store, named by sha256.
photos = sa.Table(
    "photos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("media_type", sa.String(40), nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("work_order_id", sa.Integer, sa.ForeignKey("work_orders.id"), nullable=False),
    sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("uploaded_by", sa.String(100), nullable=False),
    sa.Column("uploaded_at", sa.Float, nullable=False),
    sa.Column("latitude", sa.Float),
    sa.Column("longitude", sa.Float),
    sa.Column("taken_at", sa.String(40)),
    sa.Column("file_name", sa.String(200), nullable=False),
    sa.Index("photos_alert", "alert_id"),
    sa.Index("photos_work_order", "work_order_id"),
    *_client_key("photos"),
)
