"""What a training checkpoint holds besides the weights, and how a run resumes from one.

A checkpoint keeps the step, the schedule length, the loader's position, the RNG states
(rank 0's: every rank seeds alike and draws alike, so they are equal), the optimisers and
schedules, the best validation L2, the data-fault tallies and the model's description.
Resuming picks the newest intact checkpoint, refuses one made for another model, adapter
layout or data split, and warns when the data or the schedule length changed.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from maa_train.data.loader import LoaderState
from maa_train.students.checkpoint import CheckpointMismatchError, check_compatible
from maa_train.train import train_state
from maa_train.train.config import TrainConfig
from maa_train.train.optimizers import cosine_with_warmup
from maa_train.train.resume_check import ResumeMismatchError, check_resumable, load_newest_intact

log = logging.getLogger(__name__)


@dataclass
class Found:
    path: Path
    trainable: dict
    disc: dict | None
    state: dict
    saved_cfg: dict  # the run's config as saved with the checkpoint ({} for older ones)


def _read(path: Path):
    file = path / "config.json"
    return (*train_state.load(path), json.loads(file.read_text()) if file.exists() else {})


def newest_resumable(ckpt_dir: Path, student) -> Found | None:
    """The newest intact checkpoint, checked against this run's model and adapters."""
    found = load_newest_intact(train_state.complete(ckpt_dir), _read)
    if found is None:
        return None
    path, (trainable, disc, state, saved_cfg) = found
    check_resumable(path, state["model"], student.config)
    try:
        check_compatible({}, {}, trainable, student.trainable_state_dict())
    except CheckpointMismatchError as exc:
        raise ResumeMismatchError(f"checkpoint {path}: {exc}") from None
    return Found(path, trainable, disc, state, saved_cfg)


def check_loader(path: Path, saved: LoaderState, current: LoaderState) -> None:
    if (saved.world, saved.workers) != (current.world, current.workers):
        # The loader state records each (rank, worker) stream's position: another split
        # would repeat or skip samples, so refuse rather than continue inexactly.
        raise ResumeMismatchError(
            f"checkpoint {path} was made with world size {saved.world} and data.workers={max(1, saved.workers)}; "
            f"this run has world size {current.world} and data.workers="
            f"{current.workers}: resume with the same (torchrun --nproc-per-node and data.workers)")


def warn_on_changes(found: Found, cfg: TrainConfig, total_steps: int) -> None:
    _warn_on_data_change(found.path, found.saved_cfg.get("data", {}), cfg)
    _warn_on_schedule_change(found.path, found.state, found.saved_cfg, cfg, total_steps)


def _warn_on_data_change(path: Path, saved: dict, cfg: TrainConfig) -> None:
    now = cfg.data.model_dump()
    changed = [k for k in ("train", "weights", "val", "val_fraction", "batch_size", "shuffle_buffer")
               if k in saved and saved[k] != now[k]]
    if changed:
        log.warning("resuming %s with other data settings (%s): the run continues, but not as an exact "
                    "continuation of the checkpointed one", path, ", ".join(f"data.{k}" for k in changed))


def _warn_on_schedule_change(path: Path, state: dict, saved_cfg: dict, cfg: TrainConfig, total_steps: int) -> None:
    """The schedule is rebuilt from this run's config (so a finished run can be extended, as
    torchtitan does with training.steps); a changed length moves the learning rate: say so."""
    old = state.get("total_steps") or saved_cfg.get("train", {}).get("max_steps")
    if old is None or old == total_steps:
        return
    now = cfg.model_dump()
    fields = [f"{sec}.{key} {saved_cfg[sec][key]} -> {now[sec][key]}"
              for sec, key in (("train", "max_steps"), ("train", "epochs"), ("optim", "grad_accum"),
                               ("optim", "warmup_frac"), ("data", "batch_size"), ("data", "steps_per_epoch"))
              if key in saved_cfg.get(sec, {}) and saved_cfg[sec][key] != now[sec][key]]
    warm, step = cfg.optim.warmup_frac, state["step"]
    lr_old = cfg.optim.adapter_lr * cosine_with_warmup(old, warm)(step)
    lr_new = cfg.optim.adapter_lr * cosine_with_warmup(total_steps, warm)(step)
    log.warning("resuming %s with a schedule of %d steps instead of the checkpoint's %d (%s): the cosine "
                "learning-rate schedule is rebuilt for %d steps, so at step %d the adapter learning rate is "
                "%.3g instead of %.3g; to continue the checkpointed schedule set train.max_steps=%d",
                path, total_steps, old, ", ".join(fields) or "train.max_steps", total_steps,
                step, lr_new, lr_old, old)
