"""Photos crews take on site: content hash, who, when and where; the bytes are kept apart.

Each row names its file by SHA-256 in the photo store (a folder under the data dir, one
file per hash), the work order and alert it documents, the uploader and upload time, the
phone's position if it gave one, and the camera's own time (EXIF) if the photo has it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the photos table and its indexes."""
    op.create_table(
        "photos",
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
        sa.Column("client_key", sa.String(64)),
    )
    op.create_index("photos_alert", "photos", ["alert_id"])
    op.create_index("photos_work_order", "photos", ["work_order_id"])
    op.create_index("photos_client_key", "photos", ["client_key"], unique=True)


def downgrade() -> None:
    """Drop the photos table (the files in the photo store stay)."""
    op.drop_table("photos")
