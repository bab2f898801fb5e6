"""A meterguard service process reading one MQTT subscription, for the kill -9 test.

Run as `python -m tests.collector.mqtt_service_proc BROKER_PORT DATA_DIR METERS PROTOCOL`; it runs
Service.run exactly as `meterguard run` does (Runtime.open, every detector, SIGTERM for a
clean stop), prints `subscribed` once the broker has acknowledged the subscription, and runs
until killed or stopped.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from collector.mqtt import MqttSource, MqttSourceSettings
from meterguard.model import Meter
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from service.supervisor import Service, stop_on_signals

TOPIC = "durable/{meter}/reading"
CLIENT_ID = "mg-durable"


def settings(port: int, data_dir: Path, meters: int, protocol: str = "3.1.1") -> Settings:
    """Return the service's settings: small batches, so a kill falls between many of them."""
    return Settings(
        storage=StorageSettings(data_dir=data_dir),
        api=ApiSettings(enabled=False),
        meters=[Meter(id=f"D{k:03d}", service="1p2w", nominal_v=230) for k in range(meters)],
        sources=[
            MqttSourceSettings.model_validate(
                {
                    "name": "mq",
                    "port": port,
                    "client_id": CLIENT_ID,
                    "protocol": protocol,
                    "batch_max": 40,
                    "flush_s": 0.01,
                    "subscriptions": [{"topic": TOPIC, "format": "meterguard"}],
                }
            )
        ],
    )


async def main(port: int, data_dir: Path, meters: int, protocol: str) -> None:
    """Run the service until killed or stopped."""
    runtime = Runtime.open(settings(port, data_dir, meters, protocol))
    service = Service(runtime)
    stop_on_signals(service)
    [source] = service.sources
    assert isinstance(source, MqttSource)

    async def announce() -> None:
        await source.wait_connected(30)
        print("subscribed", flush=True)

    try:
        await asyncio.gather(service.run(serve_api=False), announce())
    finally:
        await runtime.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
