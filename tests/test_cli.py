import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

import meterguard
from tests.cli import run_cli
from tests.conftest import free_port

EXAMPLE = Path(__file__).parents[1] / "deploy" / "meterguard.example.toml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    done = _cli("version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"meterguard {meterguard.__version__}"


def test_check_accepts_the_example(tmp_path: Path) -> None:
    config = tmp_path / "meterguard.toml"
    config.write_text(EXAMPLE.read_text())
    done = run_cli("run", "--check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "2 meters, 2 sources" in done.stdout  # a Modbus gateway and an MQTT broker


def test_bad_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "meterguard.toml"
    config.write_text('[api]\nport = 99999\n[detectors.reversal]\nmin_power_w = "lots"\n')
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 2
    assert "api.port" in done.stderr
    assert "Traceback" not in done.stderr
    config.write_text('[detectors.reversal]\nmin_power_w = "lots"\n')
    done = run_cli("run", "--check", "--config", str(config))
    assert done.returncode == 2
    assert "detectors.reversal.min_power_w" in done.stderr


def test_sigterm_stops_the_service_cleanly(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "meterguard.toml"
    config.write_text(
        f'[api]\nport = {port}\n[[meters]]\nid = "M1"\nservice = "1p2w"\nnominal_v = 230\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the service did not come up")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "stores flushed and closed" in output
    assert "Traceback" not in output
