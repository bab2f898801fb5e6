"""The alert and case database: SQLAlchemy (async) on SQLite by default, PostgreSQL by URL."""

from meterguard.stores.alertdb.store import SqlAlertStore, sqlite_url

__all__ = ["SqlAlertStore", "sqlite_url"]
