"""Tiny hand-made shards in the dataset format, for loader tests that must not depend on the build."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from maa_format import FORMAT


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_shard(path: Path, keys: list[str], size=(20, 24), corrupt: set[str] = frozenset(), seed=0) -> None:
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w") as tar:
        for key in keys:
            clean = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            degraded = np.clip(clean.astype(int) + 20, 0, 255).astype(np.uint8)
            members = {"clean.png": png(clean), "degraded.png": b"garbage" if key in corrupt else png(degraded),
                       "json": json.dumps({"key": key}).encode()}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path.with_suffix(".stats.json").write_text(json.dumps({"ok": len(keys)}))


def write_dataset(root: Path, counts: list[int], **kw) -> Path:
    (root / "shards").mkdir(parents=True, exist_ok=True)
    names = []
    for i, n in enumerate(counts):
        name = f"{i:06d}"
        write_shard(root / "shards" / f"{name}.tar", [f"s{i}-k{j:03d}" for j in range(n)], seed=i, **kw)
        names.append(name)
    (root / "dataset.json").write_text(json.dumps({"format": FORMAT, "shards": names}))
    return root
