"""Tiny inputs shared by the dataset-build tests: generated photos and fast recipes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Fast ops only, tiny output: the tests are about the pipeline, not the ops.
GLOBAL_RECIPE = {
    "name": "test-global",
    "output": {"size": 24, "crop": "random"},
    "global": {"one_of": [{"op": "gaussian_noise", "severity": [1, 5]}, {"op": "jpeg", "severity": [1, 5]}]},
}
OTHER_RECIPE = {
    "name": "test-other",
    "output": {"size": 24, "crop": "random"},
    "global": {"op": "impulse_noise", "severity": [1, 3]},
    "local": {"p": 1.0, "regions": [1, 2], "area": [0.01, 0.7], "ops": {"op": "pixelate", "severity": 3}},
}
LOCAL_RECIPE = {
    "name": "test-local",
    "output": {"size": 24, "crop": "random"},
    "global": {"op": "gaussian_noise", "severity": 2},
    "local": {"p": 1.0, "regions": [1, 2], "area": [0.01, 0.7], "ops": {"op": "pixelate", "severity": 3}},
}
# Fine segments on tiny images, so the local stage has regions to pick.
MASKS = {"kind": "felzenszwalb", "min_area": 0.005, "felzenszwalb": {"scale": 20.0, "min_size": 10}}


def make_photos(folder: Path, n: int, seed: int = 0, sub: bool = True) -> list[Path]:
    """``n`` small blocky RGB images (some in a sub-folder) of varied sizes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = 28 + 3 * (i % 5), 36 + 2 * (i % 7)
        blocks = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
        img = np.kron(blocks, np.ones((h // 4 + 1, w // 5 + 1, 1), dtype=np.uint8))[:h, :w]
        img = np.clip(img.astype(np.int16) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        where = folder / "sub" if (sub and i % 3 == 2) else folder
        where.mkdir(exist_ok=True)
        p = where / f"img{i:03d}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def dataset_bytes(root: Path) -> dict[str, bytes]:
    """Every deterministic file of a built dataset (timings live only in the stats files)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.endswith(".stats.json") and not rel.startswith("masks/"):
            out[rel] = p.read_bytes()
    return out


def slow_marker_task(task: tuple[str, int]) -> int:
    """A distributor task that takes a while and leaves a file when it has finished."""
    import time

    folder, index = task
    time.sleep(0.4)
    (Path(folder) / f"done-{index}").write_text("ok")
    return index


def count_segmentations(monkeypatch) -> list[int]:
    """Patch the scikit-image mask source to record the batch size of every generate() call."""
    from corruptor.masks import skimage as mask_skimage

    calls: list[int] = []
    real = mask_skimage.SkimageMaskSource.generate

    def counting(self, images, keys=None):
        calls.append(len(images))
        return real(self, images, keys)

    monkeypatch.setattr(mask_skimage.SkimageMaskSource, "generate", counting)
    return calls
