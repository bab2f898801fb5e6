"""The alert and case database: SQLAlchemy (async) on SQLite by default, PostgreSQL by URL."""

from meterguard.stores.alertdb.store import SqlAlertStore, UserExistsError, sqlite_url

__all__ = ["SqlAlertStore", "UserExistsError", "sqlite_url"]
