"""The local stage: degradations applied inside chosen regions, blended in with a feathered edge.

Feathering is defined on the signed distance ``sd`` from a pixel centre to the region
boundary (negative inside; an outside pixel next to the region has ``sd = 0.5``):
``alpha = smoothstep(clip(0.5 - sd / feather, 0, 1))``. So alpha is exactly 1 where
``sd <= -feather / 2`` and exactly 0 where ``sd >= feather / 2``: a pixel whose Euclidean
distance to the nearest region pixel is at least ``feather / 2 + 0.5`` (the *feather
band* ends there) is bit-identical to the input. ``feather = 0`` is a hard mask.

Each selected region gets its own op draw; the op runs on the image as left by the
previous regions (whole image: most ops are not translation-local, so a crop would
change what lands inside the region), and only the feathered region is composited back.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from corruptor.masks import rle
from corruptor.ops.step import replay_op

RunOps = Callable[[np.ndarray, int], tuple[np.ndarray, list[dict]]]


def check_masks(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> Sequence[np.ndarray]:
    if hasattr(masks, "areas"):  # a lazy view (corruptor.build.mask_view): decoded on use
        if tuple(masks.shape) != tuple(shape):
            raise ValueError(f"masks have shape {tuple(masks.shape)}; they must match the image's {tuple(shape)}")
        return masks
    out = []
    for i, mask in enumerate(masks):
        arr = np.asarray(mask)
        if arr.shape != tuple(shape):
            raise ValueError(f"masks[{i}] has shape {arr.shape}; it must match the image's {tuple(shape)}")
        out.append(arr if arr.dtype == np.bool_ else arr.astype(bool))
    return out


def candidates(masks: Sequence[np.ndarray], area: tuple[float, float]) -> list[int]:
    """Indices of masks whose area fraction lies in ``[area[0], area[1]]`` (and is non-empty)."""
    keep = []
    if hasattr(masks, "areas"):  # lazy view: areas known without decoding
        return [i for i, count in enumerate(masks.areas)
                if count > 0 and area[0] <= count / masks.size <= area[1]]
    for i, mask in enumerate(masks):
        count = int(np.count_nonzero(mask))
        frac = count / mask.size
        if count > 0 and area[0] <= frac <= area[1]:
            keep.append(i)
    return keep


def select_regions(masks: Sequence[np.ndarray], area: tuple[float, float], count: tuple[int, int],
                   rng: np.random.Generator) -> list[int]:
    """Draw how many regions (in ``count``), then which, without replacement, among candidates."""
    pool = candidates(masks, area)
    if not pool:
        return []
    n = int(rng.integers(count[0], count[1] + 1))
    n = min(n, len(pool))
    picked = rng.choice(len(pool), size=n, replace=False)
    return [pool[int(i)] for i in picked]


def bbox(mask: np.ndarray) -> list[int]:
    """COCO ``[x, y, width, height]`` of a non-empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def band_reach(feather: float) -> float:
    """Distance to the region from which pixels are guaranteed untouched."""
    return feather / 2.0 + 0.5 if feather > 0 else 0.5


def _edt(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance from each True pixel to the nearest False one.

    OpenCV's exact transform is several times faster than SciPy's but returns float32;
    squared distances between pixel centres are integers, so rounding them recovers
    the exact value and the band edge does not depend on float noise.
    """
    d = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.sqrt(np.rint(d.astype(np.float64) ** 2))


def feather_alpha(mask: np.ndarray, feather: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Soft alpha on the bounding box of the feather band: ``(alpha float32, (y0, y1, x0, x1))``."""
    x, y, w, h = bbox(mask)
    pad = int(math.ceil(band_reach(feather))) + 1
    y0, y1 = max(0, y - pad), min(mask.shape[0], y + h + pad)
    x0, x1 = max(0, x - pad), min(mask.shape[1], x + w + pad)
    crop = mask[y0:y1, x0:x1]
    if feather <= 0:
        return crop.astype(np.float32), (y0, y1, x0, x1)
    if crop.all():  # region covers the whole image: nothing to feather against
        return np.ones(crop.shape, np.float32), (y0, y1, x0, x1)
    # The pad ring is background wherever the image continues, so distances in the crop
    # equal distances in the full image.
    d_out = _edt(~crop)
    d_in = _edt(crop)
    sd = np.where(crop, 0.5 - d_in, d_out - 0.5)
    t = np.clip(0.5 - sd / float(feather), 0.0, 1.0)
    alpha = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    return alpha, (y0, y1, x0, x1)


def composite(base: np.ndarray, corrupted: np.ndarray, mask: np.ndarray, feather: float,
              touched: np.ndarray | None = None) -> np.ndarray:
    """``base`` with ``corrupted`` blended in through the feathered ``mask``; pixels with
    non-zero alpha (region plus feather band) are set in ``touched`` when given."""
    out = base.copy()
    if not mask.any():
        return out
    alpha, (y0, y1, x0, x1) = feather_alpha(mask, feather)
    if touched is not None:
        touched[y0:y1, x0:x1] |= alpha > 0
    sub, cor = base[y0:y1, x0:x1], corrupted[y0:y1, x0:x1]
    # alpha 0 keeps the input and alpha 1 takes the corrupted pixel as they are; only
    # the band in between goes through floats
    patch = np.where((alpha >= 1.0)[:, :, None], cor, sub)
    band = np.nonzero((alpha > 0.0) & (alpha < 1.0))
    b = sub[band].astype(np.float32)
    blend = b + (cor[band].astype(np.float32) - b) * alpha[band][:, None]
    patch[band] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = patch
    return out


def apply_regions(image: np.ndarray, masks: Sequence[np.ndarray], feather: float,
                  run_ops: RunOps) -> tuple[np.ndarray, list[dict], np.ndarray | None]:
    """Corrupt each region in turn; ``run_ops(image, j)`` draws and applies region j's ops.

    Returns the image, the region records and the uint8 0/255 union of the pixels the
    regions that got at least one op may change, feather bands included (``None`` when
    none did): outside it the local stage left the image bit-identical.
    """
    regions: list[dict] = []
    union = np.zeros(image.shape[:2], bool)
    for j, mask in enumerate(masks):
        corrupted, ops = run_ops(image, j)
        if not ops:  # the region's node drew nothing (p < 1): not a corrupted region
            continue
        image = composite(image, corrupted, mask, feather, touched=union)
        first = ops[0]
        regions.append({
            "rle": rle.encode(mask), "area": int(np.count_nonzero(mask)), "bbox": bbox(mask),
            "feather": float(feather), "op": first["op"], "severity": first["severity"],
            "params": first["params"], "ops": ops,
        })
    mask_png = union.astype(np.uint8) * 255 if regions else None
    return image, regions, mask_png


def replay_regions(image: np.ndarray, regions: Sequence[dict]) -> np.ndarray:
    """Apply recorded regions again (RLE masks, feather, ops) to ``image``."""
    for region in regions:
        mask = rle.decode(region["rle"])
        corrupted = image
        for record in region["ops"]:
            corrupted = replay_op(corrupted, record)
        image = composite(image, corrupted, mask, float(region["feather"]))
    return image
