"""Photometric degradations: low light, colour shifts and over-exposure.

Each sampler maps one uniform draw per parameter into the level's range, in a fixed order,
so a generator in the same state gives parameters that grow with the level.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from corruptor.ops.normal import standard_normal
from corruptor.ops.registry import Params, register
from maa_format.rng import child_seed

# Display <-> linear light is modelled as a pure power law; the sRGB toe is irrelevant here.
DISPLAY_GAMMA = 2.2


def _lerp(bounds: tuple[float, float], u: float) -> float:
    return float(bounds[0] + (bounds[1] - bounds[0]) * u)


def _log_lerp(bounds: tuple[float, float], u: float) -> float:
    return float(math.exp(_lerp((math.log(bounds[0]), math.log(bounds[1])), u)))


def _signed(rng: np.random.Generator, magnitude: float, size: int) -> list[float]:
    """Values in +-[magnitude/2, magnitude]: a shift never vanishes at a chosen level."""
    u = rng.random(size)
    sign = np.where(rng.random(size) < 0.5, -1.0, 1.0)
    return [float(v) for v in sign * magnitude * (0.5 + 0.5 * u)]


def _display(linear: np.ndarray) -> np.ndarray:
    """Float linear light in [0, 1] to uint8 display values."""
    # A floor above zero: pow() takes a slow path at exact zeros; 1e-8 still displays as 0.
    np.clip(linear, 1e-8, 1.0, out=linear)
    cv2.pow(linear, 1.0 / DISPLAY_GAMMA, dst=linear)
    return cv2.convertScaleAbs(linear, alpha=255.0)


# ------------------------------------------------------------------ low light

# exposure: linear-light scale; gamma: extra display-domain darkening curve x**gamma;
# shot: Poisson-like variance per unit of linear signal; cast: max log-gain of the R and
# B channels against G. Read noise follows shot noise through the log-linear relation
# seen across real camera sensors (log read ~ 2.18 log shot + 1.2, spread 0.26).
LOW_LIGHT: tuple[dict, ...] = (
    {"exposure": (0.35, 0.6), "gamma": (1.0, 1.2), "shot": (1e-4, 4e-4), "cast": 0.03},
    {"exposure": (0.2, 0.35), "gamma": (1.1, 1.35), "shot": (4e-4, 1.5e-3), "cast": 0.05},
    {"exposure": (0.1, 0.2), "gamma": (1.2, 1.5), "shot": (1.5e-3, 4e-3), "cast": 0.08},
    {"exposure": (0.05, 0.1), "gamma": (1.3, 1.7), "shot": (4e-3, 8e-3), "cast": 0.12},
    {"exposure": (0.02, 0.05), "gamma": (1.5, 2.0), "shot": (8e-3, 1.5e-2), "cast": 0.15},
)


def _sample_low_light(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = LOW_LIGHT[level - 1]
    u_exp, u_gamma, u_shot, z_read = rng.random(), rng.random(), rng.random(), rng.standard_normal()
    shot = _log_lerp(row["shot"], u_shot)
    read = float(math.exp(2.18 * math.log(shot) + 1.2 + 0.26 * z_read))
    r, b = _signed(rng, row["cast"], 2)
    return {
        "exposure": _lerp(row["exposure"], 1.0 - u_exp),  # darker at higher u for every level
        "gamma": _lerp(row["gamma"], u_gamma),
        "shot": shot,
        "read": read,
        "cast": [math.exp(r), 1.0, math.exp(b)],
        "seed": child_seed(rng),
    }


@register("low_light", family="lowlight", severities=LOW_LIGHT, sampler=_sample_low_light)
def low_light(image: np.ndarray, params: Params) -> np.ndarray:
    """Under-exposed capture: darkening curve, sensor shot and read noise, colour cast."""
    exponent = DISPLAY_GAMMA * float(params["gamma"])
    levels = (np.arange(256, dtype=np.float64) / 255.0) ** exponent * float(params["exposure"])
    lut = (levels[:, None] * np.asarray(params["cast"], dtype=np.float64)[None, :]).astype(np.float32)
    linear = cv2.LUT(image, lut.reshape(1, 256, 3))
    std = cv2.sqrt(linear * np.float32(params["shot"]) + np.float32(params["read"]))
    noise = standard_normal(np.random.default_rng(int(params["seed"])), image.shape)
    linear += std * noise
    return _display(linear)


# ------------------------------------------------------------------ colour shift

# gain: max log white-balance error of R and B; hue: max rotation in degrees;
# saturation: max |log| saturation factor.
COLOR_SHIFT: tuple[dict, ...] = (
    {"gain": 0.04, "hue": 3.0, "saturation": 0.1},
    {"gain": 0.08, "hue": 8.0, "saturation": 0.2},
    {"gain": 0.14, "hue": 15.0, "saturation": 0.35},
    {"gain": 0.22, "hue": 25.0, "saturation": 0.5},
    {"gain": 0.32, "hue": 40.0, "saturation": 0.7},
)

# RGB -> YIQ: hue and saturation act on the (I, Q) chroma plane as a rotation and a scale.
_YIQ = np.array([[0.299, 0.587, 0.114],
                 [0.595716, -0.274453, -0.321263],
                 [0.211456, -0.522591, 0.311135]])
_YIQ_INV = np.linalg.inv(_YIQ)


def _sample_color_shift(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = COLOR_SHIFT[level - 1]
    r, b = _signed(rng, row["gain"], 2)
    (hue,) = _signed(rng, row["hue"], 1)
    (sat,) = _signed(rng, row["saturation"], 1)
    return {"gains": [math.exp(r), 1.0, math.exp(b)], "hue": hue, "saturation": math.exp(sat)}


def color_matrix(gains, hue: float, saturation: float) -> np.ndarray:
    """One 3x3 RGB matrix: white-balance gains, then hue rotation and saturation in YIQ."""
    t = math.radians(float(hue))
    chroma = float(saturation) * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    mix = np.eye(3)
    mix[1:, 1:] = chroma
    return (_YIQ_INV @ mix @ _YIQ @ np.diag(np.asarray(gains, dtype=np.float64))).astype(np.float32)


@register("color_shift", family="color", severities=COLOR_SHIFT, sampler=_sample_color_shift)
def color_shift(image: np.ndarray, params: Params) -> np.ndarray:
    """White-balance error with hue and saturation shift (one colour matrix)."""
    matrix = color_matrix(params["gains"], params["hue"], params["saturation"])
    return cv2.transform(image, matrix)  # saturating uint8 arithmetic


# ------------------------------------------------------------------ over-exposure

# stops: exposure gain in EV; bloom: share of clipped energy spread around highlights;
# bloom_sigma: blur radius of the glow as a fraction of the longer side.
OVEREXPOSURE: tuple[dict, ...] = (
    {"stops": (0.4, 0.7), "bloom": (0.1, 0.2), "bloom_sigma": (0.005, 0.01)},
    {"stops": (0.7, 1.1), "bloom": (0.15, 0.3), "bloom_sigma": (0.008, 0.015)},
    {"stops": (1.1, 1.6), "bloom": (0.2, 0.4), "bloom_sigma": (0.01, 0.02)},
    {"stops": (1.6, 2.2), "bloom": (0.3, 0.5), "bloom_sigma": (0.015, 0.03)},
    {"stops": (2.2, 3.0), "bloom": (0.4, 0.6), "bloom_sigma": (0.02, 0.04)},
)


def _sample_overexposure(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = OVEREXPOSURE[level - 1]
    u = rng.random(3)
    return {"stops": _lerp(row["stops"], u[0]), "bloom": _lerp(row["bloom"], u[1]),
            "bloom_sigma": _lerp(row["bloom_sigma"], u[2])}


def _glow(excess: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian glow; wide blurs run on a reduced copy since the glow has no fine detail."""
    h, w = excess.shape[:2]
    factor = max(1.0, sigma / 2.0)
    if factor > 1.5 and min(h, w) / factor >= 4:
        small = cv2.resize(excess, (max(1, round(w / factor)), max(1, round(h / factor))),
                           interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT_101)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(excess, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


@register("overexposure", family="color", severities=OVEREXPOSURE, sampler=_sample_overexposure)
def overexposure(image: np.ndarray, params: Params) -> np.ndarray:
    """Too much exposure: gain, highlight clipping, and a glow around clipped areas."""
    # A gain in linear light is the same gain ** (1 / gamma) on display values; uint8
    # saturation is the highlight clipping.
    gain = 2.0 ** (float(params["stops"]) / DISPLAY_GAMMA)
    exposed = cv2.convertScaleAbs(image, alpha=gain)
    # Energy lost above white, from luminance, spreads as a glow.
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    excess = np.maximum(luma * np.float32(gain) - np.float32(255.0), np.float32(0.0))
    sigma = max(0.5, float(params["bloom_sigma"]) * max(image.shape[:2]))
    glow = cv2.convertScaleAbs(_glow(excess, sigma), alpha=float(params["bloom"]))
    return cv2.add(exposed, cv2.cvtColor(glow, cv2.COLOR_GRAY2RGB))
