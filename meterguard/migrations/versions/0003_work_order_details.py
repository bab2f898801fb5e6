"""Work orders: several alerts each, the on-site checklist, outcome method, recovered kWh.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the new work order columns and the order-to-alerts table, keeping every row."""
    with op.batch_alter_table("work_orders") as batch:
        batch.add_column(sa.Column("checklist", sa.JSON))
        batch.add_column(sa.Column("outcome_method", sa.String(100)))
        batch.add_column(sa.Column("recovered_kwh", sa.Float))
    op.create_table(
        "work_order_alerts",
        sa.Column("work_order_id", sa.Integer, sa.ForeignKey("work_orders.id"), primary_key=True),
        sa.Column("alert_id", sa.String(200), sa.ForeignKey("alerts.id"), primary_key=True),
    )
    op.create_index("work_order_alerts_alert", "work_order_alerts", ["alert_id"])
    # Every existing order covers the one alert it was made for.
    op.execute(
        "INSERT INTO work_order_alerts (work_order_id, alert_id)"
        " SELECT id, alert_id FROM work_orders"
    )
    # "dispatched" became the more precise "en_route" (a crew on its way).
    op.execute("UPDATE work_orders SET status = 'en_route' WHERE status = 'dispatched'")


def downgrade() -> None:
    """Drop the new columns and table; orders en route or on site read as dispatched."""
    op.execute(
        "UPDATE work_orders SET status = 'dispatched' WHERE status IN ('en_route', 'on_site')"
    )
    op.drop_index("work_order_alerts_alert", "work_order_alerts")
    op.drop_table("work_order_alerts")
    with op.batch_alter_table("work_orders") as batch:
        batch.drop_column("recovered_kwh")
        batch.drop_column("outcome_method")
        batch.drop_column("checklist")
