"""The test tiers: every server marker is registered and left out of `make test-fast`,
and a test that reaches a server its markers do not name fails."""

from __future__ import annotations

import contextlib
import functools
import socket
import tomllib
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

from tests import run_all, run_fast, tiers

ROOT = Path(__file__).parents[1]


def test_every_server_marker_is_registered_and_left_out_of_test_fast() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    registered = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    assert {*tiers.SERVER_MARKERS, "slow"} <= registered
    assert set(tiers.FIXTURE_MARKERS.values()) <= set(tiers.SERVER_MARKERS)
    assert run_fast.SELECTION == (
        "not (postgres or influxdb or victoriametrics or mqtt or nats or browser or poppler"
        " or slow)"
    )
    assert "$(BIN)/python -m tests.run_fast" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_test_fast_deals_out_single_tests_to_parallel_workers() -> None:
    argv = run_fast.command(["-x"])
    assert argv[argv.index("-m", 2) + 1] == run_fast.SELECTION
    assert argv[argv.index("-n") + 1] == str(run_fast.PROCESSES)
    # Per-file scheduling ran one of the schema test's cases (they share one node id).
    assert argv[argv.index("--dist") + 1] == "worksteal"
    assert argv[-1] == "-x"


def test_make_test_runs_every_test_once_and_only_the_tests_apart_beside_the_others() -> None:
    runs = run_all.commands(["-x"])
    selections = [argv[argv.index("-m", 2) + 1] for _, argv in runs]
    assert selections[1:] == [run_all.TOGETHER_SELECTION, run_all.APART_SELECTION]
    assert all(argv[-1] == "-x" for _, argv in runs)
    assert "-n" not in runs[1][1]  # one process each
    assert "-n" not in runs[2][1]
    names = [*tiers.SERVER_MARKERS, "slow", "apart"]
    compiled = [Expression.compile(selection) for selection in selections]
    # Every combination of markers a test may carry is selected by exactly one run.
    for bits in range(2 ** len(names)):
        marks = {name for i, name in enumerate(names) if bits >> i & 1}
        chosen = [e.evaluate(functools.partial(_carries, marks)) for e in compiled]
        assert chosen.count(True) == 1, (sorted(marks), chosen)
        # A test apart runs beside the others only if it is of the server run at all.
        assert chosen[2] == ("apart" in marks and bool(marks - {"apart"})), sorted(marks)


def _carries(marks: set[str], name: str, /, **_: object) -> bool:
    return name in marks


def test_reaching_the_machine_s_broker_unmarked_fails_the_test(
    request: pytest.FixtureRequest,
) -> None:
    # Even a client that swallows the refusal (paho's own thread would) fails the test.
    with (
        pytest.raises(pytest.fail.Exception, match="is not marked 'mqtt'"),
        tiers.running(request.node),
        contextlib.suppress(BaseException),
        socket.socket() as sock,
    ):
        sock.connect(("127.0.0.1", tiers.MQTT_PORT))


def test_starting_a_private_server_unmarked_fails_the_test(
    request: pytest.FixtureRequest,
) -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="a private InfluxDB but is not marked"),
        tiers.running(request.node),
    ):
        tiers.require_marker("influxdb", "a private InfluxDB")
    request.node.add_marker("influxdb")
    with tiers.running(request.node):
        tiers.require_marker("influxdb", "a private InfluxDB")  # marked: goes ahead
