"""Mask sources: typed settings (one model per kind), the `MaskSource` protocol, per-image outcomes.

Implementations live in their own modules and register with `corruptor.masks.registry`;
this module imports none of them.

A mask source turns images into region masks (bool H x W, at the image's own resolution)
for the local degradations. Sources work on batches because SAM2 is only fast that way;
a batch never fails as a whole for one bad image: each slot of the result is either a
`MaskSet` or the `MaskError` that explains why that image has no masks.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Protocol, Sequence, Union, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from maa_format.io import content_hash

FALLBACK_SOURCES: tuple[str, ...] = ("felzenszwalb", "slic")
MASK_SOURCE_KINDS: tuple[str, ...] = ("felzenszwalb", "slic", "sam2", "precomputed")
# What every "this source cannot work" error ends with.
FALLBACK_HINT = f"use --mask-source {' or '.join(FALLBACK_SOURCES)} (CPU, no weights) instead"


class MaskError(Exception):
    """Base of every mask problem; ``status`` is the short code a sample records."""

    status = "mask_error"


class MaskSourceError(MaskError):
    """The source cannot be built (bad checkpoint, unknown config, unreadable file)."""

    status = "mask_source_error"


class MaskTooSmall(MaskError):
    """The image is below the source's minimum side; that sample records this status."""

    status = "mask_too_small"


class MaskMissing(MaskError):
    """A precomputed mask file has no entry for this image."""

    status = "mask_missing"


class MaskSet(list):
    """Bool masks of one image, largest-score first, with one score per mask.

    A list subclass so callers that only want masks can treat it as ``list[np.ndarray]``.
    """

    def __init__(self, masks: Sequence[np.ndarray] = (), scores: Sequence[float] | None = None):
        super().__init__(masks)
        self.scores: list[float] = [float(s) for s in (scores if scores is not None else [1.0] * len(self))]
        if len(self.scores) != len(self):
            raise ValueError(f"{len(self)} masks but {len(self.scores)} scores")


MaskOutcome = Union[MaskSet, MaskError]


class Sam2Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    checkpoint: Path | None = None
    allow_random_weights: bool = False  # tests and speed benchmarks only: same cost, meaningless masks
    points_per_side: int = Field(32, ge=1, le=128)
    points_per_batch: int = Field(256, ge=1)
    images_per_batch: int = Field(4, ge=1)
    pred_iou_thresh: float = Field(0.8, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0)
    stability_score_offset: float = Field(1.0, ge=0.0)
    box_nms_thresh: float = Field(0.7, gt=0.0, le=1.0)
    # Model input side; None keeps the config's (1024). Smaller only for CPU tests.
    image_size: int | None = Field(None, ge=64)
    device: Literal["auto", "cuda", "cpu"] = "auto"
    bf16: bool = True  # autocast on CUDA only


class FelzenszwalbSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: float = Field(300.0, gt=0)
    sigma: float = Field(0.8, ge=0)
    min_size: int = Field(50, ge=1)


class SlicSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_segments: int = Field(48, ge=2)
    compactness: float = Field(10.0, gt=0)
    sigma: float = Field(1.0, ge=0)


class MaskSourceConfig(BaseModel):
    """Everything that decides which masks an image gets; validated once, hashed for the cache."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["felzenszwalb", "slic", "sam2", "precomputed"] = "felzenszwalb"
    # >= 1: pixels; < 1: fraction of the image area. Smaller masks are dropped.
    min_area: float = Field(0.002, ge=0)
    max_masks: int = Field(64, ge=1)
    # Images longer than this are segmented at this side; masks come back at full size.
    max_side: int | None = Field(512, ge=16)
    min_side: int = Field(16, ge=1)
    sam2: Sam2Settings = Sam2Settings()
    felzenszwalb: FelzenszwalbSettings = FelzenszwalbSettings()
    slic: SlicSettings = SlicSettings()
    precomputed_path: Path | None = None

    def settings_hash(self) -> str:
        """Stable hash of what changes the masks; throughput knobs and device are left out."""
        doc: dict = {
            "kind": self.kind, "min_area": self.min_area, "max_masks": self.max_masks,
            "max_side": self.max_side, "min_side": self.min_side,
        }
        if self.kind == "sam2":
            s = self.sam2
            doc["sam2"] = s.model_dump(mode="json", exclude={"points_per_batch", "images_per_batch", "device", "checkpoint"})
            doc["sam2"]["checkpoint"] = _file_identity(s.checkpoint)
        elif self.kind in ("felzenszwalb", "slic"):
            doc[self.kind] = getattr(self, self.kind).model_dump(mode="json")
        else:
            doc["precomputed"] = _file_identity(self.precomputed_path, content=True)
        return content_hash(doc)

    def min_area_px(self, height: int, width: int) -> int:
        return int(self.min_area) if self.min_area >= 1 else int(np.ceil(self.min_area * height * width))


def _file_identity(path: Path | None, content: bool = False) -> str | None:
    # Checkpoints are hundreds of MB: name + size identify them well enough and cost nothing.
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return str(p.name)
    if content:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    return f"{p.name}:{p.stat().st_size}"


@runtime_checkable
class MaskSource(Protocol):
    name: str
    config: MaskSourceConfig

    def generate(self, images: list[np.ndarray], keys: Sequence[Sequence[str]] | None = None) -> list[MaskOutcome]:
        """One outcome per image: a `MaskSet` (bool H x W masks) or the `MaskError` for it.

        ``keys`` names each image (sha256 first, then path forms); only sources that look
        masks up rather than compute them (precomputed) need it.
        """
        ...


def generate_one(source: MaskSource, image: np.ndarray, keys: Sequence[str] | None = None) -> MaskSet:
    """Single-image convenience: returns the masks or raises that image's `MaskError`."""
    outcome = source.generate([image], [list(keys)] if keys is not None else None)[0]
    if isinstance(outcome, MaskError):
        raise outcome
    return outcome


def check_image(cfg: MaskSourceConfig, image: np.ndarray) -> MaskError | None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        return MaskError(f"mask sources need uint8 H x W x 3 images, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < cfg.min_side:
        return MaskTooSmall(f"image {h}x{w} is below the mask source's min_side={cfg.min_side}")
    return None


def working_scale(cfg: MaskSourceConfig, height: int, width: int) -> float:
    """Factor (<= 1) that brings the long side down to ``max_side``."""
    if cfg.max_side is None or max(height, width) <= cfg.max_side:
        return 1.0
    return cfg.max_side / max(height, width)


def select_masks(cfg: MaskSourceConfig, masks: list[np.ndarray], scores: list[float]) -> MaskSet:
    """Drop masks under ``min_area``, order by score then area, keep ``max_masks``."""
    if not masks:
        return MaskSet()
    h, w = masks[0].shape
    floor = max(1, cfg.min_area_px(h, w))
    areas = [int(m.sum()) for m in masks]
    order = sorted((i for i in range(len(masks)) if areas[i] >= floor), key=lambda i: (-scores[i], -areas[i], i))
    order = order[: cfg.max_masks]
    return MaskSet([masks[i] for i in order], [scores[i] for i in order])
