"""The FastAPI application, built by create_app(settings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp

import meterguard
from api.openapi import openapi_schema
from api.routers import (
    alerts,
    cases,
    evidence,
    fleet,
    health,
    i18n,
    meters,
    metrics,
    photos,
    session,
    sources,
    stream,
    tips,
    transformers,
    users,
    work_orders,
)
from api.security import SecurityHeaders, policy_for_page
from api.text_guard import printable, refuse_unstorable_text, refused
from meterguard.errors import StoreUnavailableError
from meterguard.runtime import Runtime
from meterguard.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, wrong or revoked token"},
    403: {"description": "The caller's role may not do this"},
}


class _App(FastAPI):
    """FastAPI whose every answer, errors and the 500 page included, has SecurityHeaders."""

    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's error middleware, so its 500 answer gets the headers too.
        return SecurityHeaders(super().build_middleware_stack())


def _storable(value: Any) -> Any:
    """Return a JSON value with every string writable as UTF-8 (lone surrogates escaped)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


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

    app = _App(
        title="meterguard",
        version=meterguard.__version__,
        description="Revenue-protection monitoring: alerts, meters and their readings.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_unstorable_text)],
        # /docs is served below with a policy of its own; ReDoc would need a looser one.
        docs_url=None,
        redoc_url=None,
    )
    if runtime is not None:
        app.state.runtime = runtime
    app.include_router(health.router)
    app.include_router(alerts.router, responses=AUTH_RESPONSES)
    app.include_router(meters.router, responses=AUTH_RESPONSES)
    app.include_router(fleet.router, responses=AUTH_RESPONSES)
    app.include_router(transformers.router, responses=AUTH_RESPONSES)
    app.include_router(sources.router, responses=AUTH_RESPONSES)
    app.include_router(stream.router, responses=AUTH_RESPONSES)
    app.include_router(metrics.router)
    app.include_router(cases.router, responses=AUTH_RESPONSES)
    app.include_router(evidence.router, responses=AUTH_RESPONSES)
    app.include_router(tips.router, responses=AUTH_RESPONSES)
    app.include_router(photos.router, responses=AUTH_RESPONSES)
    app.include_router(work_orders.router, responses=AUTH_RESPONSES)
    app.include_router(users.router, responses=AUTH_RESPONSES)
    app.include_router(session.router, responses=AUTH_RESPONSES)
    app.include_router(i18n.router, responses=AUTH_RESPONSES)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(StoreUnavailableError)
    async def store_down(request: Request, exc: StoreUnavailableError) -> Response:
        # A store outage is the server's temporary state, not a bug: 503, try again.
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own answer echoes the input, and an input with a lone surrogate cannot
        # be written as UTF-8: that was a 500. The same answer, with such text escaped.
        detail = _storable(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        cause = exc.__cause__
        if exc.status_code == 400 and cause is not None:
            # FastAPI could not read the body (not UTF-8, nested too deep to parse): that is
            # invalid input like any other, a 422 in the same shape.
            reason = f"the body cannot be read as JSON ({type(cause).__name__})"
            if isinstance(cause, UnicodeDecodeError):
                reason = f"the body is not UTF-8 text (byte {cause.start + 1}: {cause.reason})"
            return await invalid(request, refused(("body",), reason))
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

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_schema(app, app.state.runtime.registry)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="meterguard - API")
        page.headers["Content-Security-Policy"] = policy_for_page(bytes(page.body).decode())
        return page

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

    @app.get("/transformers/{transformer_id}", include_in_schema=False)
    async def transformer_page(transformer_id: str) -> FileResponse:
        return FileResponse(STATIC_DIR / "transformer.html")

    @app.get("/crew", include_in_schema=False)
    async def crew_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "crew.html")

    return app
