"""Atmospheric degradations: haze (scattering with a depth proxy) and rain streaks."""
from __future__ import annotations

import math

import cv2
import numpy as np

from corruptor.ops.registry import Params, register
from maa_format.rng import child_seed


def _lerp(bounds: tuple[float, float], u: float) -> float:
    return float(bounds[0] + (bounds[1] - bounds[0]) * u)


def _smooth_field(seed: int, shape: tuple[int, int], cells: int = 4) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid, upsampled smoothly."""
    grid = np.random.default_rng(seed).random((cells, cells), dtype=np.float32)
    field = cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0.0, 1.0, out=field)


# ------------------------------------------------------------------ haze

# beta: scattering coefficient for depth in [0, 1]; airlight: brightness of the veil.
HAZE: tuple[dict, ...] = (
    {"beta": (0.4, 0.7), "airlight": (0.75, 0.85)},
    {"beta": (0.7, 1.1), "airlight": (0.78, 0.88)},
    {"beta": (1.1, 1.6), "airlight": (0.8, 0.9)},
    {"beta": (1.6, 2.3), "airlight": (0.82, 0.92)},
    {"beta": (2.3, 3.2), "airlight": (0.85, 0.95)},
)


def _sample_haze(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = HAZE[level - 1]
    u = rng.random(6)
    a = _lerp(row["airlight"], u[1])
    tint = (u[2] - 0.5) * 0.06  # a faint blue or yellow veil
    return {
        "beta": _lerp(row["beta"], u[0]),
        "airlight": [a * (1 - tint), a, min(1.0, a * (1 + tint))],
        "depth_near": _lerp((0.05, 0.3), u[3]),
        "depth_noise": _lerp((0.15, 0.4), u[4]),
        "seed": child_seed(rng),
    }


def haze_depth(shape: tuple[int, int], near: float, noise: float, seed: int) -> np.ndarray:
    """Depth proxy in [near, 1]: the scene recedes toward the top, with smooth variation."""
    h, w = shape
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None] if h > 1 else np.ones((1, 1), np.float32)
    depth = (1.0 - noise) * ramp + noise * _smooth_field(seed, shape)
    return np.float32(near) + np.float32(1.0 - near) * depth


@register("haze", family="weather", severities=HAZE, sampler=_sample_haze)
def haze(image: np.ndarray, params: Params) -> np.ndarray:
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta depth)."""
    depth = haze_depth(image.shape[:2], float(params["depth_near"]), float(params["depth_noise"]),
                       int(params["seed"]))
    t = np.exp(-float(params["beta"]) * depth)[:, :, None]
    airlight = np.asarray(params["airlight"], dtype=np.float32) * np.float32(255.0)
    out = image.astype(np.float32) * t + airlight * (1.0 - t)
    return cv2.convertScaleAbs(out)


# ------------------------------------------------------------------ rain

# density: share of pixels that seed a streak; length and width: fractions of the shorter
# side; intensity: streak opacity; veil: the light mist heavy rain lays over a scene.
RAIN: tuple[dict, ...] = (
    {"density": (0.001, 0.002), "length": (0.03, 0.05), "intensity": (0.25, 0.35), "veil": (0.0, 0.04)},
    {"density": (0.002, 0.003), "length": (0.04, 0.06), "intensity": (0.3, 0.4), "veil": (0.02, 0.06)},
    {"density": (0.003, 0.005), "length": (0.05, 0.07), "intensity": (0.35, 0.45), "veil": (0.04, 0.09)},
    {"density": (0.005, 0.007), "length": (0.06, 0.08), "intensity": (0.4, 0.5), "veil": (0.06, 0.12)},
    {"density": (0.007, 0.01), "length": (0.07, 0.1), "intensity": (0.45, 0.55), "veil": (0.09, 0.16)},
)


def _sample_rain(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = RAIN[level - 1]
    u = rng.random(6)
    return {
        "density": _lerp(row["density"], u[0]),
        "length": _lerp(row["length"], u[1]),
        "width": _lerp((0.001, 0.002), u[2]),
        "angle": _lerp((-25.0, 25.0), u[3]),
        "intensity": _lerp(row["intensity"], u[4]),
        "veil": _lerp(row["veil"], u[5]),
        "seed": child_seed(rng),
    }


def streak_kernel(length: float, width: float, angle: float) -> np.ndarray:
    """Peak-1 profile of one falling drop: a segment of ``length`` px with a Gaussian cross
    section of ``width`` px, tilted ``angle`` degrees from vertical (top to the right)."""
    sigma = max(0.4, width)
    half_len = max(0.5, length / 2.0)
    radius = int(math.ceil(half_len + 3 * sigma))
    ax = np.arange(-radius, radius + 1, dtype=np.float32)
    x, y = ax[None, :], -ax[:, None]
    t = math.radians(angle)
    along = x * math.sin(t) + y * math.cos(t)
    across = x * math.cos(t) - y * math.sin(t)
    beyond = np.maximum(np.abs(along) - half_len, 0.0)
    return np.exp(-(across**2 + beyond**2) / (2 * sigma**2)).astype(np.float32)


@register("rain", family="weather", severities=RAIN, sampler=_sample_rain)
def rain(image: np.ndarray, params: Params) -> np.ndarray:
    """Rain streaks: seeded drops smeared along a tilted motion path, screen-blended."""
    h, w = image.shape[:2]
    side = min(h, w)
    rng = np.random.default_rng(int(params["seed"]))
    # Drops are sparse: draw their count, places and brightness rather than a full field.
    count = int(rng.binomial(h * w, min(max(float(params["density"]), 0.0), 1.0)))
    places = rng.integers(0, h * w, count)
    drops = np.zeros(h * w, np.float32)
    drops[places] = rng.random(count, dtype=np.float32) * np.float32(0.5) + np.float32(0.5)
    kernel = streak_kernel(float(params["length"]) * side, float(params["width"]) * side,
                           float(params["angle"]))
    layer = cv2.filter2D(drops.reshape(h, w), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    layer = np.minimum(layer * np.float32(params["intensity"]), np.float32(1.0))[:, :, None]
    veil = float(params["veil"])
    veiled = (np.arange(256, dtype=np.float32) * (1 - veil) + 255 * 0.8 * veil).astype(np.float32)
    base = cv2.LUT(image, veiled.reshape(1, 256))
    # Screen blend: light streaks brighten what is behind them, never darken it.
    return cv2.convertScaleAbs(base + (np.float32(255.0) - base) * layer)
