"""Gateway leases in the alert database: one holder at a time, expiry by the database's clock."""

import asyncio

from meterguard.stores.alertdb import AlertDatabase


async def test_one_owner_at_a_time_until_the_lease_runs_out(alert_db_url: str) -> None:
    db = AlertDatabase(alert_db_url)
    leases = db.leases
    try:
        assert await leases.claim("modbus://10.0.0.1:502", "a", 1.0)
        assert not await leases.claim("modbus://10.0.0.1:502", "b", 1.0)
        # Another gateway is free; the holder renews its own.
        assert await leases.claim("modbus://10.0.0.2:502", "b", 1.0)
        assert await leases.claim("modbus://10.0.0.1:502", "a", 1.0)
        held = {lease.resource: lease.owner for lease in await leases.holders()}
        assert held == {"modbus://10.0.0.1:502": "a", "modbus://10.0.0.2:502": "b"}
        assert all(0 < lease.remaining_s <= 1.0 for lease in await leases.holders())

        await asyncio.sleep(1.2)  # a, gone silent, lets its lease run out
        assert await leases.holders() == []
        assert await leases.claim("modbus://10.0.0.1:502", "b", 1.0)
        assert not await leases.claim("modbus://10.0.0.1:502", "a", 1.0)

        # A release is the owner's only, and frees the gateway at once.
        assert not await leases.release("modbus://10.0.0.1:502", "a")
        assert await leases.release("modbus://10.0.0.1:502", "b")
        assert await leases.claim("modbus://10.0.0.1:502", "a", 30.0)
    finally:
        await db.close()


async def test_racing_claimants_get_one_lease_between_them(alert_db_url: str) -> None:
    first = AlertDatabase(alert_db_url)
    await first.open()
    others = [AlertDatabase(alert_db_url) for _ in range(3)]
    try:
        for _ in range(5):
            won = await asyncio.gather(
                *(
                    db.leases.claim("dlms:substation-7", f"owner-{i}", 5.0)
                    for i, db in enumerate([first, *others])
                )
            )
            assert sum(won) == 1
            (holder,) = await first.leases.holders()
            assert holder.owner == f"owner-{won.index(True)}"
            await first.leases.release("dlms:substation-7", holder.owner)
    finally:
        for db in [first, *others]:
            await db.close()
