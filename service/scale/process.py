"""What the ingest and worker commands share: settings, logging, a stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from meterguard.settings import Settings, load_settings


def load(config: Path) -> Settings:
    """Load the settings and set up logging to stderr at their level."""
    settings = load_settings(config)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


def stop_event() -> asyncio.Event:
    """Return an event SIGINT and SIGTERM set (call from the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
