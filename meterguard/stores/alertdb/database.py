"""One alert database and its repositories: alerts, case work, users, leases, photos."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from meterguard.clock import Clock, wall_time
from meterguard.stores.alertdb.alerts import SqlAlertRepository
from meterguard.stores.alertdb.cases import SqlCaseRepository
from meterguard.stores.alertdb.core import Database
from meterguard.stores.alertdb.leases import SqlLeaseRepository
from meterguard.stores.alertdb.photos import SqlPhotoRepository
from meterguard.stores.alertdb.users import SqlUserRepository


class AlertDatabase:
    """Opens the database core once and builds each repository over it."""

    def __init__(
        self,
        url: str,
        *,
        retry_for_s: float = 120.0,
        echo: bool = False,
        clock: Clock = wall_time,
    ) -> None:
        self.core = Database(url, retry_for_s=retry_for_s, echo=echo, clock=clock)
        self.alerts = SqlAlertRepository(self.core)
        self.cases = SqlCaseRepository(self.core)
        self.users = SqlUserRepository(self.core)
        self.leases = SqlLeaseRepository(self.core)
        self.photos = SqlPhotoRepository(self.core)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL it was opened with."""
        return self.core.url

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (for migrations and tests)."""
        return self.core.engine

    async def open(self) -> None:
        """Bring the schema up to date (the first use does it otherwise)."""
        await self.core.open()

    async def close(self) -> None:
        """Release the connections; the repositories refuse later calls."""
        await self.core.close()
