"""The public release's data layout: `maa-datasets/{CC12M,COCO,...}/{ref,dis,metadata.jsonl}`.

Given as one `--source`, the root is not a folder of photos: each folder holding `ref/` and
`dis/` (found at any depth) is a paired source of its own, named after it. Scanning the
root as plain photos would take the degraded `dis/` images for clean references and
corrupt them again. `metadata.jsonl` records (one JSON object per line) are matched to
pairs by file name and kept in each sample's provenance.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]+")


def is_paired_folder(path: Path) -> bool:
    return (path / "ref").is_dir() and (path / "dis").is_dir()


def find_paired_folders(root: Path) -> list[Path]:
    """Folders under `root` (not `root` itself) holding `ref/` and `dis/`, sorted; a paired
    folder's own subfolders are not searched."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and {"ref", "dis"} <= set(dirnames):
            found.append(here)
            dirnames[:] = []
        else:
            dirnames.sort()
    return sorted(found)


def loose_images(root: Path, paired: list[Path], is_image) -> list[str]:
    """Images under `root` outside every paired folder (they would belong to no source)."""
    skip = {p.resolve() for p in paired}
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if (Path(dirpath) / d).resolve() not in skip)
        out += [str(Path(dirpath, f).relative_to(root)) for f in sorted(filenames) if is_image(f)]
    return out


def source_name(root: Path, folder: Path) -> str:
    """`CC12M` for `root/CC12M`; nested folders join with '-' (`web-CC12M`)."""
    parts = [_UNSAFE.sub("_", p).strip("_") or "x" for p in folder.relative_to(root).parts]
    return "-".join(parts)


def read_metadata(folder: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """(file name -> record, records) of `folder/metadata.jsonl`; every string value of a record
    that names a file (its last path part) indexes it. A malformed line is an error."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return {}, 0
    index: dict[str, dict[str, Any]] = {}
    count = 0
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not a JSON object ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, found {type(record).__name__}")
        count += 1
        for value in record.values():
            if isinstance(value, str) and value and "." in value.rsplit("/", 1)[-1]:
                index.setdefault(value.rsplit("/", 1)[-1], record)
    return index, count
