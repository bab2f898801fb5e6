"""Test tiers: the servers a test needs are pytest markers, and reaching one unmarked fails.

`make test-fast` deselects every test marked with a server, so a test that needs one and
is not marked would fail there (or hang) on a machine that has none. Markers come from the
fixtures a test uses (FIXTURE_MARKERS) or are written on the test; the helpers that start
private servers call require_marker, and an audit hook does the same for every connection
to the machine's own servers, so a missing marker fails the test in every run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import urllib.parse
from collections.abc import Iterator

import pytest

#: The machine's PostgreSQL every developer machine and CI runs (trust auth from 127.0.0.1).
PG_DSN = os.environ.get("MG_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
#: The machine's Mosquitto (anonymous, on 127.0.0.1).
MQTT_PORT = 1883

#: Set by `make test-fast` (tests/run_fast.py): property tests try fewer examples there.
FAST = os.environ.get("MG_TEST_FAST") == "1"

#: The markers of tests that need a server, or a program of the machine that make test
#: installs (poppler), described in pyproject.toml; `make test-fast` runs the tests with
#: none of them.
SERVER_MARKERS = (
    "postgres",
    "influxdb",
    "victoriametrics",
    "mqtt",
    "nats",
    "browser",
    "poppler",
)

#: Fixtures that start or reach a server, and the marker each gives the tests using it.
FIXTURE_MARKERS = {
    "broker": "mqtt",
    "secure_broker": "mqtt",
    "pg_database": "postgres",
    "private_postgres": "postgres",
    "influxdb": "influxdb",
    "victoria": "victoriametrics",
    "nats_url": "nats",
    "browser": "browser",
}

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}

#: The test being set up or run; None between tests and while fixtures are torn down
#: (a session fixture's teardown runs within whichever test happens to be last).
_current: pytest.Item | None = None
#: What require_marker refused during the running test, for a failure the test cannot
#: swallow (a refusal in a client's own thread would otherwise only stop that thread).
_refused: list[str] = []
#: Ports of the machine's servers (Mosquitto, PostgreSQL) and the marker each needs.
_machine_ports: dict[int, str] = {}


def examples(n: int) -> int:
    """Examples a property test tries: n, or a quarter of n (at least 10) in test-fast."""
    return max(10, n // 4) if FAST else n


def mark_by_fixtures(items: list[pytest.Item]) -> None:
    """Give every test the markers of the server fixtures it uses, directly or not."""
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            marker = FIXTURE_MARKERS.get(name)
            if marker is not None:
                item.add_marker(marker)


@contextlib.contextmanager
def running(item: pytest.Item) -> Iterator[None]:
    """Check what the item reaches while it is set up or run; fail it if it was refused."""
    global _current
    outer, _current = _current, item
    try:
        yield
    finally:
        _current = outer
        refused = list(dict.fromkeys(_refused))
        _refused.clear()
    if refused:
        pytest.fail("\n".join(refused), pytrace=False)


def require_marker(marker: str, what: str) -> None:
    """Fail the running test unless it carries `marker`: it is about to reach `what`."""
    item = _current
    if item is not None and item.get_closest_marker(marker) is None:
        message = (
            f"{item.nodeid} reaches {what} but is not marked {marker!r}: "
            f"add @pytest.mark.{marker} (or use a fixture that gives it)"
        )
        _refused.append(message)
        pytest.fail(message, pytrace=False)


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "socket.connect" or _current is None:
        return
    address = args[1]
    if isinstance(address, tuple) and len(address) >= 2 and address[0] in _LOOPBACK:
        marker = _machine_ports.get(address[1]) if isinstance(address[1], int) else None
        if marker is not None:
            require_marker(marker, f"the machine's server on port {address[1]}")


def watch_machine_servers() -> None:
    """Check every connection to the machine's servers against the running test's markers."""
    if not _machine_ports:
        sys.addaudithook(_audit)  # hooks cannot be removed: install one, once
    pg_port = urllib.parse.urlsplit(PG_DSN).port or 5432
    _machine_ports.update({MQTT_PORT: "mqtt", pg_port: "postgres"})
