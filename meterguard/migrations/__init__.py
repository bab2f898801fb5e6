"""Alembic migrations of the alert database (`meterguard db upgrade`)."""
