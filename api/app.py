"""The FastAPI application, built by create_app(settings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import meterguard
from api.nul_guard import refuse_nul
from api.routers import (
    alerts,
    cases,
    fleet,
    health,
    meters,
    metrics,
    session,
    sources,
    stream,
    users,
    work_orders,
)
from meterguard.errors import StoreUnavailableError
from meterguard.runtime import Runtime
from meterguard.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not valid JSON"},
    401: {"description": "Missing, wrong or revoked token"},
    403: {"description": "The caller's role may not do this"},
}


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
        dependencies=[Depends(refuse_nul)],
    )
    if runtime is not None:
        app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(alerts.router, responses=AUTH_RESPONSES)
    app.include_router(meters.router, responses=AUTH_RESPONSES)
    app.include_router(fleet.router, responses=AUTH_RESPONSES)
    app.include_router(sources.router, responses=AUTH_RESPONSES)
    app.include_router(stream.router, responses=AUTH_RESPONSES)
    app.include_router(metrics.router)
    app.include_router(cases.router, responses=AUTH_RESPONSES)
    app.include_router(work_orders.router, responses=AUTH_RESPONSES)
    app.include_router(users.router, responses=AUTH_RESPONSES)
    app.include_router(session.router, responses=AUTH_RESPONSES)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(StoreUnavailableError)
    async def store_down(request: Request, exc: StoreUnavailableError) -> Response:
        # A store outage is the server's temporary state, not a bug: 503, try again.
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette names only the first route's methods when several routes share a
            # path; a client deserves the whole list.
            allowed: set[str] = set()
            for route in app.routes:
                methods = getattr(route, "methods", None)
                if methods and route.matches(request.scope)[0] is not Match.NONE:
                    allowed |= methods
            headers = {"Allow": ", ".join(sorted(allowed))}
            return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)
        return await http_exception_handler(request, exc)

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

    @app.get("/crew", include_in_schema=False)
    async def crew_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "crew.html")

    return app
