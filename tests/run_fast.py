"""`make test-fast`: the tests that need no server, in two pytest processes at once.

Most of these tests wait on something (a subprocess, a simulator's socket, the engine's
compiled code) as much as they compute, so two processes on two cores take about half
the time of one. The test files are dealt to the processes by rough weight (WEIGHTS, in
seconds; any other file counts DEFAULT_WEIGHT), heaviest first, each to the lighter one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.tiers import SERVER_MARKERS

TESTS = Path(__file__).parent
#: Everything a server marker or the slow marker does not name.
SELECTION = f"not ({' or '.join(SERVER_MARKERS)} or slow)"
PROCESSES = 2
DEFAULT_WEIGHT = 0.5
#: Rough seconds each heavy file takes in this selection (measured; order matters only).
WEIGHTS = {
    "api/test_schema.py": 12.0,
    "collector/test_dlms.py": 15.0,
    "test_cli.py": 4.5,
    "stores/test_alertdb.py": 14.0,
    "collector/test_profile_fit.py": 1.5,
    "service/test_replay_evaluate.py": 11.0,
    "collector/test_modbus_faults.py": 7.5,
    "simulators/test_foreign_fleet.py": 0.5,
    "simulators/test_dlms_fleet.py": 1.0,
    "api/test_login_guard.py": 4.0,
    "test_end_to_end.py": 7.5,
    "collector/test_decoder_properties.py": 6.5,
    "detectors/test_cadence.py": 8.0,
    "api/test_hardening.py": 6.0,
    "detectors/test_window_detectors.py": 5.0,
    "service/test_replay_input_errors.py": 9.0,
    "api/test_alert_list.py": 5.0,
    "simulators/test_world.py": 3.5,
    "api/test_cases.py": 3.0,
    "api/test_health_summary.py": 3.0,
    "service/test_telemetry_csv_properties.py": 3.0,
}


def weight(path: Path) -> float:
    """The rough seconds a test file takes in test-fast."""
    return WEIGHTS.get(path.relative_to(TESTS).as_posix(), DEFAULT_WEIGHT)


def deal(files: list[Path], processes: int) -> list[list[Path]]:
    """Split files into `processes` groups of about equal weight."""
    groups: list[list[Path]] = [[] for _ in range(processes)]
    loads = [0.0] * processes
    for path in sorted(files, key=lambda p: (-weight(p), p)):
        lightest = loads.index(min(loads))
        groups[lightest].append(path)
        loads[lightest] += weight(path)
    return groups


def main(extra: list[str]) -> int:
    """Run the selection in PROCESSES pytest processes; 0 if every one passed."""
    files = sorted(TESTS.rglob("test_*.py"))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="meterguard-test-fast-") as tmp:
        runs = []
        for n, group in enumerate(deal(files, PROCESSES)):
            log = Path(tmp) / f"pytest-{n}.log"
            with log.open("wb") as out:
                argv = [sys.executable, "-m", "pytest", "-m", SELECTION, "-q", *extra]
                # Each process its own temp root, so neither cleans up the other's folders.
                argv += ["--basetemp", str(Path(tmp) / f"base-{n}"), *map(str, group)]
                env = {**os.environ, "MG_TEST_FAST": "1"}  # fewer examples (tests.tiers)
                runs.append(
                    (log, subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env))
                )
        codes = []
        for log, proc in runs:
            codes.append(proc.wait())
            sys.stdout.write(log.read_text(encoding="utf-8", errors="replace"))
    # 5: a process whose files hold no selected test; that is no failure.
    failed = [code for code in codes if code not in (0, 5)]
    took = time.monotonic() - started
    print(f"test-fast: {len(files)} files in {PROCESSES} processes, {took:.1f} s")
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
