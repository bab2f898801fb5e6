"""Migrate a SQLite alert database and die (os._exit) as the comments table is created.

Run as `python -m tests.stores.migration_crash_proc URL`: stands in for a process killed
in the middle of its first migration.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import sqlalchemy as sa

from meterguard.stores.alertdb import AlertDatabase
from meterguard.stores.alertdb.migrate import upgrade


def _die_at_comments(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if statement.lstrip().upper().startswith("CREATE TABLE COMMENTS"):
        os._exit(9)


async def _main(url: str) -> None:
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", _die_at_comments)
    store = AlertDatabase(url)
    await upgrade(store.engine)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
