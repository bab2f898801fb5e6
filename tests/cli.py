"""The `meterguard` command run in the test's own process: parser, code, output, exit code."""

from __future__ import annotations

import contextlib
import io
import subprocess

from service.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `meterguard ARGS` here (no interpreter to start); answer as subprocess.run does."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["meterguard", *args], code, out.getvalue(), err.getvalue())
