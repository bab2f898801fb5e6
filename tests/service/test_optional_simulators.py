"""Without the simulators (an optional install) the service runs; demo and simulate say why not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "deploy" / "meterguard.example.toml"
#: The `meterguard` command in an interpreter where `import simulators` fails, as it does
#: where only meterguard is installed (the simulators' folder is on the path here).
WITHOUT_SIMULATORS = (
    "import sys; sys.modules['simulators'] = None; "
    "from service.cli import main; sys.exit(main(sys.argv[1:]))"
)


def meterguard_without_simulators(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `meterguard ARGS` in a process that cannot import the simulators."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SIMULATORS, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("demo",),
        ("demo", "--port", "8123"),
        ("simulate", "--mix", "3", "--out", "run"),
        ("simulate",),
    ],
)
def test_a_command_that_needs_the_simulators_says_how_to_install_them(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    done = meterguard_without_simulators(tmp_path, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert lines[0].startswith(f"meterguard: `meterguard {args[0]}` needs the simulators")
    assert "`make demo`" in lines[0]
    assert "`pip install -e ./simulators`" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_service_commands_work_without_the_simulators(tmp_path: Path) -> None:
    listed = meterguard_without_simulators(tmp_path, "--help")
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout
    assert "simulate" in listed.stdout
    config = tmp_path / "meterguard.toml"
    config.write_text(EXAMPLE.read_text())
    checked = meterguard_without_simulators(tmp_path, "run", "--check", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "OK (2 meters, 2 sources" in checked.stdout


def test_a_mistyped_option_is_still_refused(tmp_path: Path) -> None:
    done = meterguard_without_simulators(tmp_path, "version", "--bogus")
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr
