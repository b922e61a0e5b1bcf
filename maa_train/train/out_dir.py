"""A run's output folder: refuse to start a new run on top of another one.

Without this, a new run appends to the old run's metrics, prunes its checkpoints, and a
later `--resume` continues whichever checkpoint is newest: two runs silently mixed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

# What a training run writes into train.out_dir (and nothing else there is touched).
RUN_ARTEFACTS = ("checkpoints", "metrics.jsonl", "tensorboard", "best", "final", "summary.json", "diverged.json")


class OutDirInUseError(ValueError):
    pass


def run_artefacts(out: Path) -> list[str]:
    return [name for name in RUN_ARTEFACTS if (out / name).exists()]


def check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Continue (resume), start over (overwrite: delete the previous run's artefacts) or refuse."""
    if resume and overwrite:
        raise OutDirInUseError("--resume and --overwrite contradict each other: give one")
    found = run_artefacts(out)
    if resume or not found:
        return
    if not overwrite:
        raise OutDirInUseError(
            f"train.out_dir {out} holds another run ({', '.join(found)}): continue it with --resume, start over "
            f"with --overwrite (deletes those), or set train.out_dir to a new folder")
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
