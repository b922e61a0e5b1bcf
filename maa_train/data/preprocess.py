"""Pair-consistent preprocessing with the encoder's own image-processor settings.

Clean and degraded images of one pair go through the *same* resize and crop, so the
distillation target and the student's input stay pixel-aligned.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maa_train.encoders.clip import CLIP
from maa_train.encoders.family import UnknownFamilyError, family_for_type

CLIP_MEAN, CLIP_STD = CLIP.mean, CLIP.std


@dataclass(frozen=True)
class ProcessorSettings:
    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    @classmethod
    def from_model_dir(cls, path: str | Path, size: int | None = None) -> "ProcessorSettings":
        """Read preprocessor_config.json when the model ships one, else derive from config.json.

        ``size`` overrides the input side (a family whose position embeddings interpolate,
        such as DINOv2, runs at any multiple of its patch size: 112 px is an 8x8 grid at
        patch 14); a fixed-size family only accepts its own size.
        """
        settings = cls._read(Path(path))
        if size is None or size == settings.size:
            return settings
        _check_size(Path(path), size)
        return cls(int(size), settings.mean, settings.std)

    @classmethod
    def _read(cls, root: Path) -> "ProcessorSettings":
        proc = root / "preprocessor_config.json"
        cfg = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
        vision = cfg.get("vision_config", cfg)
        mean, std = _family_defaults(vision.get("model_type", cfg.get("model_type")))
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


class ImageSizeError(ValueError):
    """An input size the model cannot run at."""


def _check_size(root: Path, size: int) -> None:
    cfg = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
    vision = cfg.get("vision_config", cfg)
    patch = vision.get("patch_size")
    try:
        family = family_for_type(vision.get("model_type", cfg.get("model_type")))
    except UnknownFamilyError:
        family = None
    if family is None or family.fixed_size:
        raise ImageSizeError(f"image size {size}: this model's position embeddings are fixed to "
                             f"{vision.get('image_size')} px; leave the size unset")
    if size < 1 or (patch and size % int(patch)):
        raise ImageSizeError(f"image size {size} is not a positive multiple of the patch size {patch}")


def _family_defaults(model_type: str | None) -> tuple[tuple, tuple]:
    """The encoder family's processor mean/std (CLIP's for a config no family knows)."""
    try:
        family = family_for_type(model_type)
    except UnknownFamilyError:
        return CLIP_MEAN, CLIP_STD
    return family.mean, family.std


def pair_to_tensor(clean: np.ndarray, degraded: np.ndarray, settings: ProcessorSettings,
                   crop_rng: np.random.Generator | None) -> torch.Tensor:
    """Two uint8 HxWx3 images -> uint8 tensor [2, 3, S, S], not yet normalised.

    Shorter side resized to S (PIL bicubic on uint8, as the encoders' own image processors
    do), then one S x S crop shared by both: random from ``crop_rng`` for training, centred
    when it is None. The pair stays uint8 all the way to the device (a quarter of float32's
    bytes through worker shared memory, pinned memory and the host-to-device copy);
    `normalise` turns it into the encoder's input there.
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
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))


def normalise(pixels: torch.Tensor, settings: ProcessorSettings, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 images [..., 3, H, W] -> float32 (x - 255 mean) * (1 / (255 std)), on their device.

    The one place images become the encoder's input, for training, validation and
    evaluation alike: loaders ship uint8 and this runs after the copy to the device. The
    conversion is exact and both operations are single fp32 roundings of the same constants,
    so the result does not depend on the device. ``out``, when given, is a float32 tensor of
    the same shape; otherwise a contiguous one is made.
    """
    if pixels.dtype != torch.uint8:
        raise TypeError(f"normalise expects uint8 pixels, got {pixels.dtype}")
    if pixels.dim() < 3 or pixels.shape[-3] != 3:
        raise ValueError(f"normalise expects [..., 3, H, W] pixels, got {tuple(pixels.shape)}")
    shift, scale = _affine(settings, pixels.device)
    if out is None:
        out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
    # Convert, then work in place: a mixed uint8/float subtraction is ~5x slower on the CPU.
    return out.copy_(pixels).sub_(shift).mul_(scale)


def normalise_pairs(pairs: torch.Tensor, settings: ProcessorSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch's uint8 pairs [B, 2, 3, S, S] -> normalised (clean, degraded), each a
    contiguous float32 [B, 3, S, S] on the pairs' device.

    Written straight into a [2, B, ...] buffer, so the halves come out contiguous without
    a second copy (a [:, 0] view of a [B, 2, ...] result would be strided).
    """
    if pairs.dim() != 5 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be [B, 2, 3, S, S], got {tuple(pairs.shape)}")
    halves = pairs.transpose(0, 1)
    out = normalise(halves, settings, out=torch.empty(halves.shape, dtype=torch.float32, device=pairs.device))
    return out[0], out[1]


@functools.lru_cache(maxsize=16)
def _affine(settings: ProcessorSettings, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Computed in fp32 on the CPU, then moved, so every device uses bit-identical constants;
    # cached so a training step does not pay a small synchronous host-to-device copy.
    mean = torch.tensor(settings.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(settings.std, dtype=torch.float32).view(3, 1, 1)
    return (255.0 * mean).to(device), (1.0 / (255.0 * std)).to(device)


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
