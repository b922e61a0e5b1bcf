"""The pairs an evaluation reads: the shards training held out (or a whole separate test
set), and the corruption families each sample's provenance names."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from maa_train.data.shards import ShardInfo, resolve_shards, split_holdout
from maa_train.eval.options import EvaluationError


def heldout_shards(data: str | Path, val_fraction: float = 0.05, all_shards: bool = False) -> list[ShardInfo]:
    """The shards the trainer held out of `data` at this `val_fraction` (the same hash-based
    choice), or every shard with `all_shards` (a separate test set)."""
    try:
        shards = resolve_shards(str(data))
    except FileNotFoundError as exc:
        raise EvaluationError(str(exc)) from None
    if all_shards:
        return shards
    if not 0.0 < val_fraction < 1.0:
        raise EvaluationError(f"val_fraction must be in (0, 1), got {val_fraction}")
    try:
        _, val = split_holdout(shards, val_fraction)
    except ValueError as exc:
        raise EvaluationError(f"{data}: no held-out shards: {exc}. Evaluate a separate test set with "
                              "all_shards (--all-shards)") from None
    return val


def families_of(meta: dict | None, families: Mapping[str, str]) -> list[str]:
    """Corruption families of a sample's provenance (global ops and ops inside local regions),
    looked up in the dataset's op -> family table (``op_families`` of dataset.json)."""
    if not meta:
        return []
    ops = list(meta.get("ops") or [])
    ops += [op for region in meta.get("regions") or [] for op in region.get("ops") or []]
    found = []
    for op in ops:
        name = op.get("op") if isinstance(op, dict) else None
        family = families.get(name, "unknown op")  # an op the dataset's table does not name
        if family not in found:
            found.append(family)
    return found
