"""`make test-fast`: the tests that need no server and are not slow, in parallel processes.

Most of these tests wait on something (a subprocess, a simulator's socket, the engine's
compiled code) as much as they compute, so three pytest-xdist workers on two cores keep
both busy. Tests are dealt out one by one and an idle worker takes over another's queue
(`--dist worksteal`). Not whole files (`--dist loadfile`): schemathesis gives every case of
the schema test the same node id, which per-file scheduling collapses into a single case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.tiers import SERVER_MARKERS

#: Everything a server marker or the slow marker does not name.
SELECTION = f"not ({' or '.join(SERVER_MARKERS)} or slow)"
PROCESSES = 3


def command(extra: list[str]) -> list[str]:
    """The pytest command line of test-fast."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        SELECTION,
        "-q",
        "-n",
        str(PROCESSES),
        "--dist",
        "worksteal",
        *extra,
    ]


def main(extra: list[str]) -> int:
    """Run the selection in PROCESSES workers; pytest's exit code."""
    started = time.monotonic()
    env = {**os.environ, "MG_TEST_FAST": "1"}  # fewer examples (tests.tiers)
    code = subprocess.call(command(extra), env=env)
    print(f"test-fast: {PROCESSES} processes, {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
