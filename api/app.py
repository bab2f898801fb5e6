"""The FastAPI application, built by create_app(settings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import meterguard
from api.routers import alerts, health, meters, metrics, stream
from meterguard.runtime import Runtime
from meterguard.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; without a runtime it opens (and later closes) the stores itself."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            yield
            return
        own = Runtime.open(settings)
        app.state.runtime = own
        try:
            yield
        finally:
            await own.close()

    app = FastAPI(
        title="meterguard",
        version=meterguard.__version__,
        description="Revenue-protection monitoring: alerts, meters and their readings.",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(alerts.router)
    app.include_router(meters.router)
    app.include_router(stream.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def board() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    # The pages fetch their data from the API; the id in the path is read by the script.
    @app.get("/alerts/{alert_id}", include_in_schema=False)
    async def alert_page(alert_id: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "alert.html")

    @app.get("/meters/{meter_id}", include_in_schema=False)
    async def meter_page(meter_id: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "meter.html")

    return app
