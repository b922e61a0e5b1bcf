"""Resuming: pick the newest checkpoint that is intact, and check it fits this run.

A kill or a full disk can leave the newest checkpoint damaged (a truncated safetensors, state
or config file) even though its folder was renamed into place. `--resume` then falls back
to the newest intact one and names the damaged ones, instead of failing on the first.
"""
from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any, Callable

from maa_train.students.checkpoint import PRECISION_FIELDS, RESOLVED_FIELDS, blocks_difference

log = logging.getLogger(__name__)

# Student settings a checkpoint must share with the run that continues it.
STUDENT_FIELDS = ("kind", "model_type", "vision_model_type", "hidden_size", "num_layers", "feature_layer",
                  "select_strategy", "num_adapters", "use_projector", "grid", "adapter", "lora")


class ResumeMismatchError(ValueError):
    pass


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is not whole (header unreadable, data shorter than it declares)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "shorter than its 8-byte header length"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"header of {n} bytes does not fit in {size} bytes"
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"unreadable header ({exc})"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    need = 8 + n + max(ends, default=0)
    return None if size >= need else f"truncated: {size} of {need} bytes"


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when every file in it is whole
    (safetensors sizes against their headers, JSON parses). Format-agnostic on purpose: it
    checks whatever files the checkpoint holds."""
    if not (path / "DONE").exists():
        return "no DONE marker"
    files = sorted(p for p in path.iterdir() if p.is_file())
    if not files:
        return "empty"
    for file in files:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
        elif file.suffix == ".json":
            try:
                json.loads(file.read_bytes().decode("utf-8"))
                problem = None
            except (UnicodeDecodeError, ValueError) as exc:
                problem = f"not valid JSON ({exc})"
        elif file.stat().st_size == 0 and file.name != "DONE":
            problem = "empty file"
        else:
            problem = None
        if problem:
            return f"{file.name}: {problem}"
    return None


def load_newest_intact(candidates: list[Path], load: Callable[[Path], Any]) -> tuple[Path, Any] | None:
    """(path, load(path)) for the newest checkpoint that passes `checkpoint_problem` and loads;
    damaged ones are named in a warning. None when there is no checkpoint at all; an error
    when every one is damaged."""
    damaged = []
    for path in reversed(candidates):
        problem = checkpoint_problem(path)
        if problem is None:
            try:
                loaded = load(path)
            except Exception as exc:  # noqa: BLE001 - any failure to read a damaged file means: older one
                problem = f"cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        if problem is None:
            if damaged:
                log.warning("resuming from %s: newer checkpoint(s) are damaged and skipped: %s", path, "; ".join(damaged))
            return path, loaded
        damaged.append(f"{path} ({problem})")
    if damaged:
        raise ResumeMismatchError(f"every checkpoint is damaged, nothing to resume: {'; '.join(damaged)}")
    return None


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # tuples vs lists, as saved by JSON or pickle


def setting_differences(saved: dict, current: dict) -> list[str]:
    """`name: checkpoint -> this run` for every student setting that differs."""
    blocks = blocks_difference(saved, current)
    out = [blocks] if blocks else []
    for key in STUDENT_FIELDS:
        if key not in saved or key not in current or (blocks and key == "num_adapters"):
            continue
        old, new = _plain(saved[key]), _plain(current[key])
        if isinstance(old, dict) and isinstance(new, dict):
            out += [f"{key}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                    if k not in PRECISION_FIELDS + RESOLVED_FIELDS and old.get(k) != new.get(k)]
        elif old != new:
            out.append(f"{key}: {old!r} -> {new!r}")
    return out


def check_resumable(path: Path, saved: dict, current: dict) -> None:
    diffs = setting_differences(saved, current)
    if diffs:
        raise ResumeMismatchError(
            f"checkpoint {path} was trained with other student settings (checkpoint -> this run): "
            f"{'; '.join(diffs)}; resume with the checkpoint's settings or start a new run (--overwrite or "
            "another train.out_dir)")
