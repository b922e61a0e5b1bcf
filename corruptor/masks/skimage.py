"""Felzenszwalb and SLIC regions from scikit-image: CPU, no weights, the default source.

Each segment of the label map becomes one mask. These are over-segmentations rather than
objects, but they follow image edges, which is what local damage needs, and they keep the
demo and CI free of model weights.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from corruptor.masks.registry import register_mask_source
from corruptor.masks.source import MaskError, MaskOutcome, MaskSet, MaskSourceConfig, check_image, working_scale


def _downscale(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image
    import cv2

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _upscale_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    if labels.shape == (height, width):
        return labels
    rows = np.minimum((np.arange(height) + 0.5) * labels.shape[0] / height, labels.shape[0] - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * labels.shape[1] / width, labels.shape[1] - 1).astype(np.intp)
    return labels[rows[:, None], cols[None, :]]


def segment_labels(cfg: MaskSourceConfig, image: np.ndarray) -> np.ndarray:
    """Integer label map at the working resolution."""
    if cfg.kind == "felzenszwalb":
        from skimage.segmentation import felzenszwalb

        s = cfg.felzenszwalb
        return felzenszwalb(image, scale=s.scale, sigma=s.sigma, min_size=s.min_size)
    if cfg.kind == "slic":
        from skimage.segmentation import slic

        s = cfg.slic
        return slic(image, n_segments=s.n_segments, compactness=s.compactness, sigma=s.sigma,
                    start_label=0, channel_axis=-1)
    raise ValueError(f"SkimageMaskSource handles felzenszwalb and slic, not '{cfg.kind}'")


def masks_from_labels(cfg: MaskSourceConfig, labels: np.ndarray, height: int, width: int) -> MaskSet:
    ids, counts = np.unique(labels, return_counts=True)
    # Area test at the working resolution, scaled, so tiny segments are never upscaled.
    frac = counts / labels.size
    floor = cfg.min_area_px(height, width) / (height * width)
    keep = ids[(frac >= floor) & (frac < 1.0)]
    keep = keep[np.argsort(-counts[np.isin(ids, keep)], kind="stable")][: cfg.max_masks]
    full = _upscale_labels(labels, height, width)
    masks = [full == i for i in keep]
    masks = [m for m in masks if m.any()]
    # No model score exists: larger regions rank first, with a score of their area fraction.
    scores = [float(m.mean()) for m in masks]
    return MaskSet(masks, scores)


@register_mask_source("felzenszwalb", "slic")
class SkimageMaskSource:
    def __init__(self, cfg: MaskSourceConfig):
        self.config = cfg
        self.name = cfg.kind

    def generate(self, images: list[np.ndarray], keys: Sequence[Sequence[str]] | None = None) -> list[MaskOutcome]:
        out: list[MaskOutcome] = []
        for image in images:
            problem = check_image(self.config, image)
            if problem is not None:
                out.append(problem)
                continue
            h, w = image.shape[:2]
            try:
                labels = segment_labels(self.config, _downscale(image, working_scale(self.config, h, w)))
            except (ValueError, MemoryError) as exc:
                out.append(MaskError(f"{self.name} segmentation failed: {exc}"))
                continue
            out.append(masks_from_labels(self.config, labels, h, w))
        return out
