"""Training checkpoints that resume exactly: written atomically, the last K kept.

A checkpoint is a folder ``step_NNNNNNN`` holding the trainable weights and the
discriminator (safetensors), optimisers, schedulers, loader state, RNG states and the
step (``state.json`` + ``state.safetensors``, no pickle: see maa_train.train.state_file), and
the resolved config. It is written under a temporary name and renamed when complete, so a
kill at any moment leaves either the old set or the new one.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from maa_train.students.safe_load import load_safetensors
from maa_train.train.state_file import load_state, save_state

PREFIX = "step_"


def rng_states(device: torch.device | None = None) -> dict[str, Any]:
    """The process's RNG states; with a CUDA ``device``, also that GPU's generator (only this
    rank's own device: the number of GPUs visible may differ when the run is resumed)."""
    states = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device is not None and device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(states: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    cuda = states.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return  # a CPU checkpoint resumed on a GPU (or back) keeps the freshly seeded CUDA generator
    if isinstance(cuda, (list, tuple)):  # older checkpoints held every visible GPU's state
        cuda = cuda[device.index or 0] if len(cuda) > (device.index or 0) else None
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def _tensors(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in named.items()}


def save(root: Path, step: int, *, trainable: dict[str, torch.Tensor], disc: dict[str, torch.Tensor] | None,
         state: dict[str, Any], config: dict, keep_last: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_tensors(trainable), str(tmp / "trainable.safetensors"))
    if disc is not None:
        save_file(_tensors(disc), str(tmp / "discriminator.safetensors"))
    save_state(tmp, state)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    with open(tmp / "DONE", "w") as fh:
        fh.write(str(step))
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in complete(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(root: Path) -> list[Path]:
    """Finished checkpoints, oldest first (a folder without DONE was never renamed into place)."""
    if not root.exists():
        return []
    found = [p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / "DONE").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(root: Path) -> Path | None:
    done = complete(root)
    return done[-1] if done else None


def clean_partial(root: Path) -> None:
    for tmp in root.glob(f".{PREFIX}*.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def load(path: Path) -> tuple[dict, dict | None, dict]:
    trainable = load_safetensors(path / "trainable.safetensors", "trainable weights")
    disc_file = path / "discriminator.safetensors"
    disc = load_safetensors(disc_file, "discriminator weights") if disc_file.exists() else None
    # Never unpickled: a checkpoint may come from anywhere. Its tensors load onto the CPU;
    # load_state_dict moves the optimiser states next to each rank's own parameters.
    state = load_state(path)
    return trainable, disc, state
