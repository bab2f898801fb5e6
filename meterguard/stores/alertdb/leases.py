"""The lease repository: which process holds an exclusive resource (a gateway), and until when.

A lease is taken or renewed by one upsert that succeeds only when the row is free, expired
or already the caller's, so two processes can never both hold it. Expiry is judged in the
database server's clock, not in the callers', whose clocks may differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from meterguard.stores.alertdb import tables as t
from meterguard.stores.alertdb.core import Database

#: The server's time as epoch seconds, per dialect (SQLite: the host's, which is shared
#: by every process that can open the same file).
_SERVER_NOW = {
    "postgresql": sa.text("extract(epoch from clock_timestamp())"),
    "sqlite": sa.text("((julianday('now') - 2440587.5) * 86400.0)"),
}


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a resource, and for how long still (s, by the database's clock)."""

    resource: str
    owner: str
    remaining_s: float


class SqlLeaseRepository:
    """Leases kept in the alert database, shared by every process that opens it."""

    def __init__(self, core: Database) -> None:
        self.core = core

    def _now(self) -> sa.ColumnElement[float]:
        return sa.literal_column(str(_SERVER_NOW[self.core.dialect]), sa.Float)

    async def claim(self, resource: str, owner: str, ttl_s: float) -> bool:
        """Take or renew a lease for ttl_s; False while another owner holds it unexpired."""
        if ttl_s <= 0:
            raise ValueError("a lease lasts a positive time")

        async def claim(conn: AsyncConnection) -> bool:
            now = (await conn.execute(sa.select(self._now()))).scalar_one()
            stmt = self.core.insert(t.leases).values(
                resource=resource, owner=owner, expires_at=now + ttl_s, acquired_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["resource"],
                set_={
                    "owner": stmt.excluded.owner,
                    "expires_at": stmt.excluded.expires_at,
                    # A renewal keeps the time the owner first took it.
                    "acquired_at": sa.case(
                        (t.leases.c.owner == stmt.excluded.owner, t.leases.c.acquired_at),
                        else_=stmt.excluded.acquired_at,
                    ),
                },
                where=(t.leases.c.owner == stmt.excluded.owner) | (t.leases.c.expires_at < now),
            )
            return bool((await conn.execute(stmt)).rowcount)

        return await self.core.run(claim)

    async def release(self, resource: str, owner: str) -> bool:
        """Give a lease up at once (a clean stop); False if the owner did not hold it."""

        async def release(conn: AsyncConnection) -> bool:
            done = await conn.execute(
                sa.delete(t.leases).where(
                    (t.leases.c.resource == resource) & (t.leases.c.owner == owner)
                )
            )
            return bool(done.rowcount)

        return await self.core.run(release)

    async def holders(self) -> list[Lease]:
        """Return every unexpired lease, by resource."""
        now = self._now()
        rows = await self.core.fetch(
            sa.select(
                t.leases.c.resource,
                t.leases.c.owner,
                (t.leases.c.expires_at - now).label("remaining_s"),
            )
            .where(t.leases.c.expires_at > now)
            .order_by(t.leases.c.resource)
        )
        return [Lease(r["resource"], r["owner"], float(r["remaining_s"])) for r in rows]
