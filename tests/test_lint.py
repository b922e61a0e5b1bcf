"""The linter `make test` runs first: the tree is clean, and the rules find the bugs they are for."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["corruptor", "maa_train", "maa_format", "pipelines", "benchmarks", "tests"]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    return [exe]


def test_the_tree_is_clean():
    done = subprocess.run(_ruff() + ["check", "--no-cache", *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_catch_an_undefined_name_and_an_unused_import(tmp_path):
    # The distributor once called `log.warning` with no `log` defined: a NameError only on a
    # Ray cluster smaller than --workers. The configured rules must see that kind of fault.
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f():\n    log.warning('x')\n")
    done = subprocess.run(_ruff() + ["check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "F821" in done.stdout and "F401" in done.stdout


def test_corruptor_all_lists_exactly_the_lazy_exports():
    import corruptor

    assert sorted(corruptor.__all__) == sorted(corruptor._PUBLIC)
