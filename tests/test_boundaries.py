"""The package boundaries of the design: the two halves meet only at maa_format.

Scans every module's imports (static, including imports inside functions) rather than
importing them, so a lazy import cannot hide a crossing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level packages of this repository it must not import
FORBIDDEN = {
    "maa_format": {"corruptor", "maa_train", "pipelines", "torch", "cv2"},
    "corruptor": {"maa_train", "pipelines"},
    "maa_train": {"corruptor", "pipelines"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_on_its_side(package):
    crossings = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                crossings.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not crossings, "\n".join(crossings)
