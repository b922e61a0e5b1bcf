"""The dataset folder: file names, shard naming, and the format version checked on read.

    dataset.json                 written last by a build: FORMAT, recipe, counts, shard list
    plan.json                    the build plan (corruptor's; readers do not need it)
    shards/NNNNNN.tar            WebDataset samples
    shards/NNNNNN.parquet        manifest, one row per planned sample (schema.MANIFEST_SCHEMA)
    shards/NNNNNN.stats.json     the shard's done marker, written last
    masks/                       mask cache, keyed by source sha256 + mask settings
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maa_format.paths import confined

FORMAT = "maa-pairs/1"
DATASET_FILE = "dataset.json"
PLAN_FILE = "plan.json"
SHARDS_DIR = "shards"
MASKS_DIR = "masks"


class FormatError(ValueError):
    """A dataset written in another (or no) version of the format."""


def shard_name(index: int) -> str:
    return f"{index:06d}"


@dataclass(frozen=True)
class ShardPaths:
    tar: Path
    manifest: Path
    stats: Path

    @staticmethod
    def of(shards_dir: str | Path, index: int) -> "ShardPaths":
        d = Path(shards_dir)
        name = shard_name(index)
        return ShardPaths(d / f"{name}.tar", d / f"{name}.parquet", d / f"{name}.stats.json")


def check_format(doc: dict[str, Any], where: str | Path = DATASET_FILE) -> dict[str, Any]:
    """``doc`` (a parsed dataset.json) when it names this format; a clear error otherwise."""
    found = doc.get("format")
    if found != FORMAT:
        raise FormatError(f"{where}: format {found!r} is not supported (this code reads {FORMAT!r}); "
                          "rebuild the dataset with this version of corruptor")
    return doc


def listed_shards(root: str | Path, doc: dict[str, Any], where: str | None = None) -> list[Path]:
    """The tar of every shard ``dataset.json`` lists (names with or without ``.tar``, under
    ``shards/`` or else in the dataset folder itself), each confined to the dataset
    (`maa_format.paths.confined`): a name never leads out of it, not even through a link.
    ``doc`` is read with `maa_format.dataset_files.read_dataset`, which checks the names."""
    root = Path(root)
    where = where or str(root / DATASET_FILE)
    tars = []
    for i, entry in enumerate(doc.get("shards", [])):
        name = entry["name"] if isinstance(entry, dict) else str(entry)
        field = f"{where}: shards[{i}]"
        tar = confined(root, f"{SHARDS_DIR}/{name if name.endswith('.tar') else f'{name}.tar'}", field)
        if not tar.exists() and (root / name).exists():
            tar = confined(root, name, field)
        tars.append(tar)
    return tars
