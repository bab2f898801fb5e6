"""One process of the first-start race: open a fresh alert database, raise one alert.

Run as `python -m tests.stores.alert_race_proc URL ALERT_ID START_AT`; it waits until the
wall clock reaches START_AT (so every process starts together), opens the store with no
retries allowed, applies an OPEN for meter M1 / reversal and prints a JSON line with what
the store counted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Severity
from meterguard.stores.alertdb import AlertDatabase


async def _main(url: str, alert_id: str, start_at: float) -> None:
    store = AlertDatabase(url, retry_for_s=0.0)
    alert = Alert(
        id=alert_id,
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=time.time(),
        confidence=0.9,
        summary="race",
        evidence={},
    )
    await asyncio.sleep(max(0.0, start_at - time.time()))
    try:
        await store.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=alert.start, alert=alert))
        print(
            json.dumps({"refused": store.alerts.duplicates_refused, "retries": store.core.retries})
        )
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
