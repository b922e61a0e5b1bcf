"""Lossy codecs at chosen qualities, through OpenCV's encoders (libjpeg, libwebp)."""
from __future__ import annotations

import cv2
import numpy as np

from corruptor.ops.registry import Params, register

# quality: inclusive integer range of the encoder quality (1..100, higher is better).
JPEG: tuple[dict, ...] = (
    {"quality": (70, 90)},
    {"quality": (50, 69)},
    {"quality": (30, 49)},
    {"quality": (15, 29)},
    {"quality": (5, 14)},
)
WEBP: tuple[dict, ...] = (
    {"quality": (60, 80)},
    {"quality": (40, 59)},
    {"quality": (20, 39)},
    {"quality": (10, 19)},
    {"quality": (1, 9)},
)


def _quality_sampler(table: tuple[dict, ...]):
    def sample(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
        lo, hi = table[level - 1]["quality"]
        return {"quality": int(lo + min(int(rng.random() * (hi - lo + 1)), hi - lo))}

    return sample


def _check_quality(params: Params, op: str) -> int:
    q = params["quality"]
    if isinstance(q, bool) or int(q) != q or not 1 <= q <= 100:
        raise ValueError(f"{op} 'quality' must be an integer in 1..100, got {q!r}")
    return int(q)


def codec_roundtrip(image: np.ndarray, ext: str, flags: list[int]) -> np.ndarray:
    """Encode then decode an RGB uint8 image; encoders see BGR, as their colour transforms
    expect, and the decoder writes RGB itself (one channel swap fewer)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext, bgr, flags)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode {ext} for an image of shape {image.shape}")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    return codec_roundtrip(image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


@register("jpeg", family="compression", severities=JPEG, sampler=_quality_sampler(JPEG))
def jpeg(image: np.ndarray, params: Params) -> np.ndarray:
    """JPEG at the sampled quality (4:2:0 chroma, libjpeg's standard tables)."""
    return jpeg_roundtrip(image, _check_quality(params, "jpeg"))


@register("webp", family="compression", severities=WEBP, sampler=_quality_sampler(WEBP))
def webp(image: np.ndarray, params: Params) -> np.ndarray:
    """Lossy WebP at the sampled quality."""
    q = _check_quality(params, "webp")
    return codec_roundtrip(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, q])
