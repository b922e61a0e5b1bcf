"""Where downloads and converted folders live, and how they are written.

Everything under the cache is written to a temporary sibling first and renamed into
place, so a killed fetch leaves at most a ``.tmp-*`` leftover, never a half folder under
the final name (the final name existing is what "cached" means).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

CACHE_ENV = "MAA_CACHE_DIR"
DEFAULT_CACHE = Path("~/.cache/maa-toolkit")


def resolve_cache_dir(flag: str | Path | None = None) -> Path:
    """--cache flag, else $MAA_CACHE_DIR, else ~/.cache/maa-toolkit."""
    chosen = flag or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser().resolve()


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temp dir next to ``final``; on success it replaces ``final`` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        # mkdtemp makes 0700 folders and some writers 0600 files; a shared cache must be readable.
        for path in [tmp, *tmp.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if final.exists():
            # A stale folder (older converter) is moved aside first: rename cannot replace a
            # non-empty directory, and deleting first would leave a window with nothing there.
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=final.parent))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_copy_tree(src: Path, dst: Path) -> Path:
    """Copy a finished folder to ``dst`` with the same temp-then-rename guarantee."""
    with atomic_dir(dst) as tmp:
        for item in Path(src).iterdir():
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
    return dst
