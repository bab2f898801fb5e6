"""A meterguard service process for the kill test: the demo fleet's settings, fast detectors.

Run as `python -m tests.stores.service_proc PORT DATA_DIR DB_URL`; it polls the gateway the
test serves and writes alerts to DB_URL, exactly as `meterguard run` does (Runtime.open,
then Service.run, which first takes back the open alerts).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from meterguard.runtime import Runtime
from service.demo import demo_settings
from service.supervisor import Service
from simulators.fleet import demo_fleet

FLEET = {"n_meters": 10, "seed": 5, "thieves": 3, "solar": 2}


async def main(port: int, data_dir: Path, db_url: str) -> None:
    """Run the service until killed."""
    fleet, _ = demo_fleet(**FLEET)
    settings = demo_settings(fleet, [port], data_dir, 0, interval_s=0.3)
    settings.storage.alert_db_url = db_url
    settings.detectors["reversal"].update(raise_after_s=2, clear_after_s=120, update_every_s=1)
    runtime = Runtime.open(settings)
    try:
        await Service(runtime).run(serve_api=False)
    finally:
        await runtime.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
