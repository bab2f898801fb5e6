"""The detector loader imports detectors only: every module it loads registers one."""

from __future__ import annotations

import subprocess
import sys

from detectors.base import DETECTORS
from detectors.engine import load_detector_modules


def test_every_module_the_loader_imports_registers_a_detector() -> None:
    loaded = load_detector_modules()
    registering = {cls.__module__ for cls in DETECTORS.values()}
    assert loaded, "the loader found no detector module"
    strays = sorted(set(loaded) - registering)
    # A module that registers nothing is code the live service would import for no
    # detector: move it out of detectors/, or name it in INFRASTRUCTURE_MODULES.
    assert not strays, f"loaded as detectors but register none: {strays}"


def test_every_detector_comes_from_a_module_the_loader_imports() -> None:
    loaded = set(load_detector_modules())
    # A detector defined in an infrastructure module would be found only by chance.
    assert {cls.__module__ for cls in DETECTORS.values()} <= loaded


def test_loading_the_detectors_loads_no_offline_tool() -> None:
    # In a fresh interpreter: replay's Arrow CSV reader and progress bar stay out of the
    # live service, which loads the detectors this way.
    code = (
        "import sys; from detectors.engine import load_detector_modules; "
        "load_detector_modules(); "
        "print(sorted({'pyarrow', 'tqdm', 'service', 'simulators'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
