"""Serve a built app with uvicorn on 127.0.0.1 for the duration of a test."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.conftest import free_port


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Run the app on a free port and yield its base URL; stop it on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            # A live stream a client left open never ends by itself: do not wait on it.
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
