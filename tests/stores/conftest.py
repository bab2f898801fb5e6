"""Fixtures for the store tests: a fresh PostgreSQL database per run, alert store URLs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from meterguard.stores.alertdb import sqlite_url
from tests.stores.servers import InfluxServer, VictoriaMetrics
from tests.tiers import PG_DSN


def pg_url(dsn: str, database: str) -> str:
    """The SQLAlchemy (asyncpg) URL of a database on the server a DSN names."""
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def _admin(sql: str, dsn: str = PG_DSN) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """Create a database for this test run and drop it afterwards; yield its DSN."""
    name = f"meterguard_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def alert_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty alert database: a SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "alerts.sqlite")
    dsn: str = request.getfixturevalue("pg_database")
    asyncio.run(_admin("DROP SCHEMA public CASCADE; CREATE SCHEMA public", dsn))
    return pg_url(dsn, dsn.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """InfluxDB 1.x (Debian's influxdb package) for the whole run."""
    server = InfluxServer(tmp_path_factory.mktemp("influxdb"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics (Debian's victoria-metrics package) for the whole run."""
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
