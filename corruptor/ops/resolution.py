"""Low resolution: the image was captured or stored small and shown upscaled."""
from __future__ import annotations

import cv2
import numpy as np

from corruptor.ops.registry import Params, register

INTERPOLATIONS: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
DOWN_METHODS: tuple[str, ...] = ("area", "bilinear", "bicubic")
UP_METHODS: tuple[str, ...] = ("bilinear", "bicubic", "lanczos")

# factor: the downscale factor per side (the small image is 1/factor of the input).
LOW_RESOLUTION: tuple[dict, ...] = (
    {"factor": (1.5, 2.0)},
    {"factor": (2.0, 3.0)},
    {"factor": (3.0, 4.0)},
    {"factor": (4.0, 6.0)},
    {"factor": (6.0, 8.0)},
)


def interpolation(method: str, field: str = "method") -> int:
    if method not in INTERPOLATIONS:
        raise ValueError(f"'{field}' must be one of {', '.join(INTERPOLATIONS)}, got {method!r}")
    return INTERPOLATIONS[method]


def resize(image: np.ndarray, size: tuple[int, int], method: str, field: str = "method") -> np.ndarray:
    """Resize to (height, width), never below 1 px; a no-op when the size already matches."""
    h, w = max(1, int(size[0])), max(1, int(size[1]))
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=interpolation(method, field))


def _sample(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    lo, hi = LOW_RESOLUTION[level - 1]["factor"]
    u = rng.random(3)
    return {"factor": float(lo + (hi - lo) * u[0]),
            "down": DOWN_METHODS[min(int(u[1] * len(DOWN_METHODS)), len(DOWN_METHODS) - 1)],
            "up": UP_METHODS[min(int(u[2] * len(UP_METHODS)), len(UP_METHODS) - 1)]}


@register("low_resolution", family="resolution", severities=LOW_RESOLUTION, sampler=_sample)
def low_resolution(image: np.ndarray, params: Params) -> np.ndarray:
    """Downscale by ``factor`` with one interpolation, upscale back with another."""
    factor = float(params["factor"])
    if not factor >= 1.0:
        raise ValueError(f"low_resolution 'factor' must be >= 1, got {params['factor']!r}")
    h, w = image.shape[:2]
    small = resize(image, (round(h / factor), round(w / factor)), params["down"], "down")
    out = resize(small, (h, w), params["up"], "up")
    return out.copy() if out is image else out
