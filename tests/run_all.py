"""`make test`: every test, in two runs: those that need no server in parallel, then the rest.

The tests of `make test-fast` (no server, not slow) are dealt out to pytest-xdist workers
as there; the tests that need a server or are slow on purpose then run in one process, as
they wait on servers they start and stop and on timing that other work beside them would
disturb. Together the two selections are the whole suite: a test left out of the first is
in the second. Property tests try all their examples here (MG_TEST_FAST is not set).
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.run_fast import PROCESSES, SELECTION
from tests.tiers import SERVER_MARKERS

#: The complement of test-fast's selection.
SERVER_SELECTION = " or ".join((*SERVER_MARKERS, "slow"))


def commands(extra: list[str]) -> list[tuple[str, list[str]]]:
    """The two pytest command lines, each with its name."""
    pytest = [sys.executable, "-m", "pytest"]
    parallel = [*pytest, "-m", SELECTION, "-n", str(PROCESSES), "--dist", "worksteal", *extra]
    serial = [*pytest, "-m", SERVER_SELECTION, *extra]
    return [
        (f"no server, {PROCESSES} processes", parallel),
        ("servers and slow, one process", serial),
    ]


def main(extra: list[str]) -> int:
    """Run both selections, the second even if the first failed; the worse exit code."""
    codes: list[int] = []
    timings: list[str] = []
    for name, command in commands(extra):
        started = time.monotonic()
        code = subprocess.call(command)
        codes.append(code)
        timings.append(f"{name}: exit {code}, {time.monotonic() - started:.1f} s")
    print("make test: " + "; ".join(timings))
    # 5 is "no test selected": fine for one run when `extra` names tests of the other.
    failed = [code for code in codes if code not in (0, 5)]
    return max(failed) if failed else min(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
