"""Alembic environment: runs on the connection meterguard hands over (sync or async URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from meterguard.stores.alertdb.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through `meterguard db upgrade`")
_run(connection)
