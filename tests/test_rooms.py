"""The rooms import one way: the ground imports no room, the rooms only the ground.

`service` (the composition root) may import every room; `simulators` is an optional
install that only the composition root and the tests reach.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: The project's own top-level packages and folders of code.
PROJECT = {"meterguard", "collector", "detectors", "api", "service", "simulators", "tests", "bench"}
#: What each package may import of the project besides itself.
MAY_IMPORT = {
    "meterguard": set(),
    "collector": {"meterguard"},
    "detectors": {"meterguard"},
    "api": {"meterguard"},
    "simulators": {"meterguard"},
    "service": {"meterguard", "collector", "detectors", "api", "simulators"},
}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, module) of every absolute import in a file, type-checking ones too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def wrong_imports(root: Path, package: str) -> list[str]:
    """Return `file:line: module` for each import of `package` that crosses a wall."""
    allowed = MAY_IMPORT[package] | {package}
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imports(path):
            top = module.partition(".")[0]
            if top in PROJECT and top not in allowed:
                found.append(f"{path.relative_to(root).as_posix()}:{line}: {module}")
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_room_imports_only_what_it_may(package: str) -> None:
    assert wrong_imports(ROOT, package) == []


def test_a_wrong_import_is_found_wherever_it_hides(tmp_path: Path) -> None:
    ground = tmp_path / "meterguard" / "stores"
    ground.mkdir(parents=True)
    (ground / "fine.py").write_text("import meterguard.model\nfrom meterguard import errors\n")
    (ground / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from api.app import create_app\n"
        "def run() -> None:\n"
        "    import service.cli\n"
    )
    assert wrong_imports(tmp_path, "meterguard") == [
        "meterguard/stores/bad.py:3: api.app",
        "meterguard/stores/bad.py:5: service.cli",
    ]
