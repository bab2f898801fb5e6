"""FastAPI dependencies: the runtime every router reads from."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from meterguard.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """Return the runtime the app was built with."""
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
