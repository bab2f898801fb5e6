"""Schemathesis against the OpenAPI schema, every check: what the schema admits is accepted,
what it refuses is refused, no server error, no response outside the schema."""

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from api.app import create_app
from api.params import parse_time_param
from meterguard.model import Alert, AlertEvent, AlertEventType, AlertKind, Meter, Severity
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings
from tests.conftest import make_batch
from tests.tiers import FAST, examples


def _seeded_runtime(data_dir: Path) -> tuple[Runtime, str]:
    config = Settings(
        storage=StorageSettings(data_dir=data_dir),
        api=ApiSettings(anonymous_role="viewer"),
        meters=[
            Meter(id="M1", service="3p4w", nominal_v=230, transformer="T1"),
            Meter(id="M2", service="1p2w", nominal_v=230, customer_class="Residential"),
        ],
    )
    runtime = Runtime.open(config)
    alert = Alert(
        id="M1-reversal-1767225600",
        meter="M1",
        kind=AlertKind.REVERSAL,
        severity=Severity.MAJOR,
        start=1_767_225_600,
        phase=2,
        confidence=0.9,
        summary="phase 2 reversed",
        evidence={"onset": {"ts": 1_767_225_600.0}},
    )
    batch = make_batch(
        [(1_767_225_600.0 + 60 * k, 0, {"v1": 230.0, "p2": -500.0}) for k in range(30)]
    )

    async def seed() -> str:
        await runtime.alerts.apply(AlertEvent(type=AlertEventType.OPEN, ts=1, alert=alert))
        await runtime.series.write(batch)
        _, token = await runtime.users.create_user("admin", "admin")
        return token

    token = asyncio.run(seed())
    runtime.latest.update(batch)
    return runtime, token


# Photo uploads take HEIC too, for which schemathesis has no generator of its own: bytes
# that begin as a HEIC file does (and are mostly no image), so that the type check and the
# decoder both meet them, as they meet the generated JPEG, PNG and WebP bodies.
schemathesis.openapi.media_type(
    "image/heic", st.binary(max_size=256).map(lambda rest: b"\x00\x00\x00\x18ftypheic" + rest)
)

# Schemathesis reads the schema while pytest collects, so the app is built at import.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="meterguard-schema-"))
_RUNTIME, _ADMIN_TOKEN = _seeded_runtime(_DATA_DIR)
# The stream never ends by design; logout would revoke the admin token every later case
# needs. Both have their own tests.
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", create_app(_RUNTIME.settings, _RUNTIME))
    .exclude(path="/api/stream")
    .exclude(path="/api/logout")
)
# The coverage phase (boundary and type-violating values for every parameter) is built
# while pytest collects, some 4 s in each process; test-fast keeps the generated examples
# and leaves it to make test.
schema.config.phases.coverage.enabled = not FAST


# Closed when the session ends, not the module: pytest-xdist's work stealing may hand a
# worker more cases of this test after it ran tests of other modules.
@pytest.fixture(scope="session", autouse=True)
def _close_runtime() -> Iterator[None]:
    yield
    asyncio.run(_RUNTIME.close())
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


def _inverted_window(query: dict[str, Any]) -> bool:
    """Tell whether a series query asks for a window that ends before it starts."""
    try:
        end = parse_time_param(str(query["end"])) if "end" in query else None
        start = parse_time_param(str(query["start"])) if "start" in query else None
    except ValueError:
        return False  # not a time at all: the schema refuses it, a negative case
    if start is None:
        return False  # the window is the 6 h before the end, or before now
    return start > (end if end is not None else time.time())


@schema.hook("filter_case")
def _only_requests_one_could_make(context: Any, case: schemathesis.Case[Any]) -> bool:
    # Two things a schema cannot say, so a request that the schema admits may still be
    # refused: a cursor must be one the API made for the same query (next_cursor), and a
    # series window must start before it ends, which relates two parameters. Schema-valid
    # requests the generator makes up with either are left out; requests meant to be
    # refused (negative) keep them, and what the API made is accepted (test_alert_list).
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    query = case.query or {}
    if case.path == "/api/alerts" and "cursor" in query:
        return False
    return not (case.path.endswith("/series") and _inverted_window(query))


@schema.parametrize()
@settings(max_examples=examples(60), deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    # As admin, so that every operation gets past authorisation to its real work. Every
    # check runs: the schema names the fleet's transformers and classes, the times and
    # quantities the API parses, and the text it can store.
    case.call_and_validate(headers={"Authorization": f"Bearer {_ADMIN_TOKEN}"})
