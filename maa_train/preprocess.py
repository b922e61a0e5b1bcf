"""Pair-consistent preprocessing with the encoder's own image-processor settings.

Clean and degraded images of one pair go through the *same* resize and crop, so the
distillation target and the student's input stay pixel-aligned.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ProcessorSettings:
    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    @classmethod
    def from_model_dir(cls, path: str | Path) -> "ProcessorSettings":
        """Read preprocessor_config.json when the model ships one, else derive from config.json."""
        root = Path(path)
        proc = root / "preprocessor_config.json"
        cfg = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
        vision = cfg.get("vision_config", cfg)
        siglip = "siglip" in str(vision.get("model_type", cfg.get("model_type", "")))
        mean, std = (SIGLIP_MEAN, SIGLIP_STD) if siglip else (CLIP_MEAN, CLIP_STD)
        size = vision.get("image_size")
        if proc.exists():
            p = json.loads(proc.read_text())
            crop = p.get("crop_size")
            size = (crop.get("height") if isinstance(crop, dict) else crop) or size
            if size is None:
                s = p.get("size", {})
                size = s.get("shortest_edge") or s.get("height") if isinstance(s, dict) else s
            mean = tuple(p.get("image_mean", mean))
            std = tuple(p.get("image_std", std))
        if not size:
            raise ValueError(f"cannot find the input image size in {root} (preprocessor_config.json or config.json)")
        return cls(int(size), tuple(mean), tuple(std))


def pair_to_tensor(clean: np.ndarray, degraded: np.ndarray, settings: ProcessorSettings,
                   crop_rng: np.random.Generator | None) -> torch.Tensor:
    """Two uint8 HxWx3 images -> float tensor [2, 3, S, S], normalised.

    Shorter side resized to S (PIL bicubic on uint8, as the encoders' own image processors
    do), then one S x S crop shared by both: random from ``crop_rng`` for training, centred
    when it is None. Resizing in uint8 and converting only the S x S crops to float keeps
    this a few milliseconds per pair; float bicubic on the full images cost more than
    decoding them.
    """
    if clean.shape != degraded.shape:
        raise ValueError(f"clean {clean.shape} and degraded {degraded.shape} differ in size")
    h, w = clean.shape[:2]
    s = settings.size
    scale = s / min(h, w)
    nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
    if crop_rng is None:
        top, left = (nh - s) // 2, (nw - s) // 2
    else:
        top, left = int(crop_rng.integers(0, nh - s + 1)), int(crop_rng.integers(0, nw - s + 1))
    crops = [_resize(img, nh, nw)[top:top + s, left:left + s] for img in (clean, degraded)]
    # Channels-first in uint8 before the float conversion: converting a permuted view is ~20x slower.
    pair = torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))).float()
    mean = torch.tensor(settings.mean).view(1, 3, 1, 1)
    inv_std = 1.0 / (255.0 * torch.tensor(settings.std).view(1, 3, 1, 1))
    return (pair - 255.0 * mean) * inv_std


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
