"""File lists for stock readers: what to hand `webdataset`, `ray.data` and `pyarrow`.

A dataset's ``shards/`` folder holds three files per shard (tar, Parquet manifest, stats
marker), so a reader given the folder trips over the files that are not its own:
``pyarrow.parquet.read_table(shards/)`` tries to parse the tars, and
``ray.data.read_webdataset(shards/)`` without ``file_extensions=["tar"]`` the manifests.
Only shards ``dataset.json`` lists are returned: those of a finished build. ``dataset.json``
is schema-checked and every path is confined to the dataset (`maa_format.paths`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from maa_format.dataset_files import read_dataset
from maa_format.layout import listed_shards
from maa_format.paths import check_inside

SUFFIXES = {"tar": ".tar", "parquet": ".parquet"}


def shard_files(root: str | Path, kind: Literal["tar", "parquet"] = "tar") -> list[str]:
    """Paths (strings, shard order) of the finished shards' tars or Parquet manifests."""
    if kind not in SUFFIXES:
        raise ValueError(f"kind '{kind}' not allowed; allowed: {', '.join(SUFFIXES)}")
    tars = listed_shards(root, read_dataset(root))
    return [str(check_inside(t.with_suffix(SUFFIXES[kind]), root, "dataset.json: shards")) for t in tars]
