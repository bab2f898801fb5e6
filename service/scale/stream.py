"""The readings stream on NATS JetStream: one subject per partition, kept by age."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from meterguard.settings import ScaleSettings

log = logging.getLogger(__name__)

#: Largest message the stream takes: a batch of about 7,000 readings of every quantity.
MAX_MESSAGE_BYTES = 1024 * 1024


def subject(settings: ScaleSettings, partition: int) -> str:
    """Return the subject of one partition's readings."""
    return f"{settings.subject_prefix}.{partition}"


def stream_config(settings: ScaleSettings) -> StreamConfig:
    """Return the stream as meterguard needs it: limits retention, by age only."""
    return StreamConfig(
        name=settings.stream,
        description="meterguard readings, one subject per partition",
        subjects=[f"{settings.subject_prefix}.*"],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=settings.retention_s,
        max_msg_size=MAX_MESSAGE_BYTES,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
    )


async def connect(settings: ScaleSettings, name: str) -> tuple[Client, JetStreamContext]:
    """Connect to NATS and make sure the readings stream exists with our settings."""
    nc = await nats.connect(
        settings.nats_url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    js = nc.jetstream()
    config = stream_config(settings)
    try:
        await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s on %s", settings.stream, settings.nats_url)
    else:
        # Retention and replicas follow the settings; the subjects are the same by name.
        await js.update_stream(config)
    return nc, js


async def last_sequence(js: JetStreamContext, settings: ScaleSettings, partition: int) -> int:
    """Return the stream sequence of a partition's newest message (0: it has none)."""
    try:
        msg = await js.get_last_msg(settings.stream, subject(settings, partition))
    except NotFoundError:
        return 0
    return int(msg.seq or 0)
