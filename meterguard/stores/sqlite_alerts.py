"""The embedded alert store: alerts and their event history in SQLite (WAL)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from meterguard.errors import AlertNotFoundError
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind
from meterguard.stores.sqlite_worker import SqliteWorker

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    meter TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    phase INTEGER,
    start REAL NOT NULL,
    end_ts REAL,
    confidence REAL NOT NULL,
    estimated_kwh_lost REAL NOT NULL,
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL,
    active INTEGER NOT NULL
);
-- The database itself refuses a second active alert for one meter and kind.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active ON alerts (meter, kind) WHERE active = 1;
CREATE INDEX IF NOT EXISTS alerts_start ON alerts (start DESC);
CREATE TABLE IF NOT EXISTS alert_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts (id),
    type TEXT NOT NULL,
    data_ts REAL NOT NULL,
    recorded_at REAL NOT NULL,
    alert TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_history_alert ON alert_history (alert_id, seq);
"""

_UPSERT = """
INSERT INTO alerts (id, meter, kind, severity, phase, start, end_ts, confidence,
                    estimated_kwh_lost, summary, evidence, active)
VALUES (:id, :meter, :kind, :severity, :phase, :start, :end_ts, :confidence,
        :estimated_kwh_lost, :summary, :evidence, :active)
ON CONFLICT (id) DO UPDATE SET
    severity = excluded.severity, phase = excluded.phase, end_ts = excluded.end_ts,
    confidence = excluded.confidence, estimated_kwh_lost = excluded.estimated_kwh_lost,
    summary = excluded.summary, evidence = excluded.evidence, active = excluded.active
"""

_SELECT = (
    "SELECT id, meter, kind, severity, phase, start, end_ts, confidence, "
    "estimated_kwh_lost, summary, evidence FROM alerts"
)


def _row_to_alert(row: tuple[Any, ...]) -> Alert:
    return Alert(
        id=row[0],
        meter=row[1],
        kind=AlertKind(row[2]),
        severity=row[3],
        phase=row[4],
        start=row[5],
        end=row[6],
        confidence=row[7],
        estimated_kwh_lost=row[8],
        summary=row[9],
        evidence=json.loads(row[10]),
    )


class SqliteAlertStore:
    """Alert store in a local SQLite file."""

    def __init__(self, path: Path) -> None:
        self._worker = SqliteWorker(path, SCHEMA)
        #: Opens refused because the meter already had an active alert of that kind.
        self.duplicates_refused = 0

    async def apply(self, event: AlertEvent) -> None:
        """Record an event; an open that would duplicate an active alert is refused and logged."""
        alert = event.alert
        params = {
            "id": alert.id,
            "meter": alert.meter,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "phase": alert.phase,
            "start": alert.start,
            "end_ts": alert.end,
            "confidence": alert.confidence,
            "estimated_kwh_lost": alert.estimated_kwh_lost,
            "summary": alert.summary,
            "evidence": json.dumps(alert.evidence),
            "active": int(alert.end is None),
        }
        history = (alert.id, event.type.value, event.ts, time.time(), alert.model_dump_json())

        def write(conn: sqlite3.Connection) -> bool:
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(_UPSERT, params)
                    conn.execute(
                        "INSERT INTO alert_history (alert_id, type, data_ts, recorded_at, alert)"
                        " VALUES (?, ?, ?, ?, ?)",
                        history,
                    )
            except sqlite3.IntegrityError:
                return False
            return True

        if not await self._worker.run(write):
            self.duplicates_refused += 1
            if event.type is AlertEventType.OPEN:
                log.warning(
                    "refused a second active %s alert for meter %s", alert.kind, alert.meter
                )

    async def get(self, alert_id: str) -> Alert:
        """Return one alert by id."""
        row = await self._worker.run(
            lambda c: c.execute(_SELECT + " WHERE id = ?", (alert_id,)).fetchone()
        )
        if row is None:
            raise AlertNotFoundError(alert_id)
        return _row_to_alert(row)

    async def history(self, alert_id: str) -> list[dict[str, Any]]:
        """Return the events recorded for an alert, oldest first."""
        rows = await self._worker.run(
            lambda c: c.execute(
                "SELECT type, data_ts, recorded_at FROM alert_history WHERE alert_id = ?"
                " ORDER BY seq",
                (alert_id,),
            ).fetchall()
        )
        return [{"type": r[0], "ts": r[1], "recorded_at": r[2]} for r in rows]

    async def list(
        self,
        *,
        active: bool | None = None,
        meter: str | None = None,
        kind: AlertKind | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Return alerts, newest start first."""
        where: list[str] = []
        args: list[Any] = []
        if active is not None:
            where.append("active = ?")
            args.append(int(active))
        if meter is not None:
            where.append("meter = ?")
            args.append(meter)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind.value)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY start DESC, id LIMIT ?"
        args.append(limit)
        rows = await self._worker.run(lambda c: c.execute(sql, args).fetchall())
        return [_row_to_alert(r) for r in rows]

    async def close(self) -> None:
        """Close the database file."""
        await self._worker.close()
