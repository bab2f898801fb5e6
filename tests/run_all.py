"""`make test`: every test, in two steps: those that need no server in parallel, then the rest.

The tests of `make test-fast` (no server, not slow) are dealt out to pytest-xdist workers
as there; the tests that need a server or are slow on purpose then run one after another
in one process, as they wait on servers they start and stop and on timing that other work
beside them would disturb. Only the few marked `apart`, which mostly wait on real time on
servers of their own (the demo's story, an InfluxDB outage of a minute, a scale-out
worker killed and its partitions taken over), run meanwhile in a second process; its
output follows the first's. Together the selections are the whole suite: a test left out
of one is in another, and none is in two. Property tests try all their examples here
(MG_TEST_FAST is not set).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.run_fast import PROCESSES, SELECTION
from tests.tiers import SERVER_MARKERS

#: The complement of test-fast's selection.
SERVER_SELECTION = " or ".join((*SERVER_MARKERS, "slow"))
#: ... run one after another, but for the tests apart, which run beside them.
TOGETHER_SELECTION = f"({SERVER_SELECTION}) and not apart"
APART_SELECTION = f"({SERVER_SELECTION}) and apart"


def commands(extra: list[str]) -> list[tuple[str, list[str]]]:
    """The three pytest command lines, each with its name; the last two run together."""
    pytest = [sys.executable, "-m", "pytest"]
    parallel = [*pytest, "-m", SELECTION, "-n", str(PROCESSES), "--dist", "worksteal", *extra]
    return [
        (f"no server, {PROCESSES} processes", parallel),
        ("servers and slow, one process", [*pytest, "-m", TOGETHER_SELECTION, *extra]),
        ("apart, beside them", [*pytest, "-m", APART_SELECTION, *extra]),
    ]


def main(extra: list[str]) -> int:
    """Run every selection, each even if another failed; the worse exit code."""
    (fast_name, fast), (together_name, together), (apart_name, apart) = commands(extra)
    codes: list[int] = []
    timings: list[str] = []
    started = time.monotonic()
    codes.append(subprocess.call(fast))
    timings.append(f"{fast_name}: exit {codes[-1]}, {time.monotonic() - started:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "apart.log"
        started = time.monotonic()
        with log.open("wb") as sink:
            # To a file, printed after: two pytest runs on one terminal would interleave.
            beside = subprocess.Popen(apart, stdout=sink, stderr=subprocess.STDOUT)
            try:
                codes.append(subprocess.call(together))
                timings.append(
                    f"{together_name}: exit {codes[-1]}, {time.monotonic() - started:.1f} s"
                )
                codes.append(beside.wait())
            finally:
                if beside.returncode is None:  # interrupted: do not leave it running
                    beside.kill()
                    beside.wait()
        timings.append(f"{apart_name}: exit {codes[-1]}, {time.monotonic() - started:.1f} s")
        shown = shlex.join(["pytest", *apart[3:]])
        print(f"\n===== the tests apart, run beside the others: {shown}", flush=True)
        sys.stdout.write(log.read_text(errors="replace"))
    print("make test: " + "; ".join(timings))
    # 5 is "no test selected": fine for one run when `extra` names tests of another.
    failed = [code for code in codes if code not in (0, 5)]
    return max(failed) if failed else min(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
