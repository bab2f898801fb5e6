"""The alert and case database: SQLAlchemy (async) on SQLite by default, PostgreSQL by URL."""

from meterguard.stores.alertdb.core import sqlite_url
from meterguard.stores.alertdb.database import AlertDatabase
from meterguard.stores.alertdb.users import UserExistsError

__all__ = ["AlertDatabase", "UserExistsError", "sqlite_url"]
