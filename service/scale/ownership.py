"""Which worker owns which partitions: leases in the alert database, shared out evenly.

Every worker holds a membership lease and counts the live ones; its share is the
partitions divided by the members, rounded up. Every third of the lease time it renews
its membership and its partitions, gives up those above its share (another worker takes
them) and tries to take free or expired ones up to its share, starting at an offset of
its own so that workers starting together reach for different partitions. A partition
whose lease could not be renewed in time is stopped before the lease can have expired
(service/leasing.py reasons the same way for gateways).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from meterguard.partitioning import fnv1a_32
from meterguard.stores.alertdb.leases import SqlLeaseRepository
from service.leasing import SAFETY_MARGIN_S


class Ownership:
    """The partition leases of one worker; `tick()` renews, sheds and takes them."""

    def __init__(
        self,
        leases: SqlLeaseRepository,
        stream: str,
        partitions: int,
        owner: str,
        ttl_s: float,
    ) -> None:
        self.leases = leases
        self.stream = stream
        self.partitions = partitions
        self.owner = owner
        self.ttl_s = ttl_s
        #: Held partitions and the monotonic time each lease is safe to use until.
        self.valid_until: dict[int, float] = {}
        self._start = fnv1a_32(owner.encode()) % partitions

    def key(self, partition: int) -> str:
        """Return the lease name of a partition."""
        return f"partition:{self.stream}:{partition}"

    @property
    def member_key(self) -> str:
        """The lease that says this worker is alive."""
        return f"worker:{self.stream}:{self.owner}"

    def valid(self, partition: int) -> bool:
        """Tell whether this worker may still act for a partition."""
        return time.monotonic() < self.valid_until.get(partition, -math.inf)

    async def members(self) -> int:
        """Return how many workers of this stream are alive (this one included)."""
        prefix = f"worker:{self.stream}:"
        return sum(1 for lease in await self.leases.holders() if lease.resource.startswith(prefix))

    async def _claim(self, partition: int) -> bool:
        sent = time.monotonic()
        if await self.leases.claim(self.key(partition), self.owner, self.ttl_s):
            self.valid_until[partition] = sent + self.ttl_s - SAFETY_MARGIN_S
            return True
        return False

    async def tick(self) -> tuple[list[int], list[int]]:
        """Renew, shed and take leases; return the partitions taken and those given up."""
        await self.leases.claim(self.member_key, self.owner, self.ttl_s)
        share = math.ceil(self.partitions / max(1, await self.members()))
        lost = [p for p in sorted(self.valid_until) if not await self._claim(p)]
        for p in lost:
            del self.valid_until[p]
        extra = sorted(self.valid_until, key=self._preference)[share:]
        await self.release(extra)
        taken: list[int] = []
        for p in sorted(range(self.partitions), key=self._preference):
            if len(self.valid_until) >= share:
                break
            if p not in self.valid_until and await self._claim(p):
                taken.append(p)
        return taken, lost + extra

    def _preference(self, partition: int) -> int:
        return (partition - self._start) % self.partitions

    async def release(self, partitions: Iterable[int]) -> None:
        """Give partitions up at once (a clean stop or a smaller share)."""
        for p in list(partitions):
            self.valid_until.pop(p, None)
            await self.leases.release(self.key(p), self.owner)

    async def leave(self) -> None:
        """Give up every partition and the membership (a clean stop)."""
        await self.release(list(self.valid_until))
        await self.leases.release(self.member_key, self.owner)
