"""Scan-like degradations for OCR-heavy pages: faded prints, halftone screens, blurred strokes."""
from __future__ import annotations

import math

import cv2
import numpy as np

from corruptor.ops.registry import Params, register


def _lerp(bounds: tuple[float, float], u: float) -> float:
    return float(bounds[0] + (bounds[1] - bounds[0]) * u)


def _index(n: int, u: float) -> int:
    return min(int(u * n), n - 1)


def _axes(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Column and row coordinates normalised to [-1, 1] (0 for a single pixel)."""
    h, w = shape
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32) if w > 1 else np.zeros(1, np.float32)
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32) if h > 1 else np.zeros(1, np.float32)
    return x[None, :], y[:, None]


# ------------------------------------------------------------------ faded print

# contrast: share of the original contrast kept around the paper tone; light: drop of
# illumination across the page; vignette: extra fall-off toward the corners.
SCAN_LOW_CONTRAST: tuple[dict, ...] = (
    {"contrast": (0.75, 0.85), "light": (0.03, 0.08), "vignette": (0.0, 0.05)},
    {"contrast": (0.6, 0.75), "light": (0.06, 0.12), "vignette": (0.03, 0.08)},
    {"contrast": (0.45, 0.6), "light": (0.1, 0.18), "vignette": (0.05, 0.12)},
    {"contrast": (0.3, 0.45), "light": (0.15, 0.25), "vignette": (0.08, 0.16)},
    {"contrast": (0.18, 0.3), "light": (0.2, 0.35), "vignette": (0.12, 0.22)},
)


def _sample_low_contrast(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = SCAN_LOW_CONTRAST[level - 1]
    u = rng.random(6)
    tone = _lerp((0.88, 0.97), u[3])
    warmth = _lerp((0.0, 0.06), u[4])  # aged paper yellows: less blue, a little less green
    return {
        "contrast": _lerp(row["contrast"], 1.0 - u[0]),
        "light": _lerp(row["light"], u[1]),
        "vignette": _lerp(row["vignette"], u[2]),
        "paper": [tone, tone * (1 - warmth / 3), tone * (1 - warmth)],
        "light_angle": _lerp((0.0, 360.0), u[5]),
    }


def illumination(shape: tuple[int, int], light: float, vignette: float, angle: float) -> np.ndarray:
    """Multiplicative lighting field in (0, 1]: a linear fall-off plus a radial one."""
    x, y = _axes(shape)
    t = math.radians(angle)
    ramp = (x * math.cos(t) + y * math.sin(t)) * np.float32(0.5) + np.float32(0.5)  # 0..1 across
    radial = (x * x + y * y) * np.float32(0.5)
    return np.float32(1.0) - np.float32(light) * ramp - np.float32(vignette) * radial


@register("scan_low_contrast", family="scan", severities=SCAN_LOW_CONTRAST, sampler=_sample_low_contrast)
def scan_low_contrast(image: np.ndarray, params: Params) -> np.ndarray:
    """Faded print: contrast pulled toward the paper tone, unevenly lit."""
    k = np.float32(params["contrast"])
    paper = np.asarray(params["paper"], dtype=np.float32) * np.float32(255.0) * (1 - k)
    field = illumination(image.shape[:2], float(params["light"]), float(params["vignette"]),
                         float(params["light_angle"]))[:, :, None]
    return cv2.convertScaleAbs((image.astype(np.float32) * k + paper) * field)


# ------------------------------------------------------------------ halftone

# period: screen cell size in pixels; scan_scale: the rescanning resolution relative to
# the print, without anti-aliasing, which beats against the screen into moire; blur:
# ink spread and scanner optics in pixels. A fine screen under a soft scan is barely
# visible (severity 1 must be mild); coarse, crisp dots are what makes high levels hard,
# so blur falls as the period grows.
HALFTONE: tuple[dict, ...] = (
    {"period": (2.5, 3.0), "scan_scale": (0.9, 0.95), "blur": (1.2, 1.5)},
    {"period": (3.0, 3.5), "scan_scale": (0.85, 0.92), "blur": (0.9, 1.1)},
    {"period": (3.5, 4.0), "scan_scale": (0.8, 0.9), "blur": (0.7, 0.9)},
    {"period": (4.0, 5.0), "scan_scale": (0.75, 0.85), "blur": (0.5, 0.7)},
    {"period": (5.0, 6.5), "scan_scale": (0.7, 0.8), "blur": (0.3, 0.5)},
)
# Classic screen angles of the C, M, Y and K separations, in degrees.
SCREEN_ANGLES: tuple[float, ...] = (15.0, 75.0, 0.0, 45.0)


def _sample_halftone(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = HALFTONE[level - 1]
    u = rng.random(4)
    return {"period": _lerp(row["period"], u[0]), "scan_scale": _lerp(row["scan_scale"], 1.0 - u[1]),
            "rotation": _lerp((0.0, 90.0), u[2]), "blur": _lerp(row["blur"], 1.0 - u[3])}


def _screen_quantiles() -> np.ndarray:
    """Threshold per 8-bit ink coverage so that a flat tint prints with that dot area: the
    inverse CDF of the screen function 0.5 + (cos a + cos b) / 4 over one cell."""
    a = (np.arange(512) + 0.5) * (2 * math.pi / 512)
    s = np.sort((0.5 + 0.25 * (np.cos(a)[:, None] + np.cos(a)[None, :])).ravel())
    q = np.quantile(s, np.arange(256) / 255.0)
    q[0] = -1.0  # no ink at zero coverage
    q[-1] = 2.0  # solid at full coverage
    return q.astype(np.float32)


_THRESHOLDS = _screen_quantiles()


def _screen(shape: tuple[int, int], period: float, angle: float) -> np.ndarray:
    """The dot screen 0.5 + (cos u + cos v) / 4 in a grid rotated by ``angle``; each cosine
    of a rotated coordinate splits into products of 1-D terms, so no per-pixel trig."""
    h, w = shape
    t = math.radians(angle)
    f = 2 * math.pi / period
    x = np.arange(w, dtype=np.float64)
    y = np.arange(h, dtype=np.float64)
    total = np.full((h, w), 0.5, np.float32)
    for cx, cy in ((math.cos(t), math.sin(t)), (-math.sin(t), math.cos(t))):
        ax, ay = f * cx * x, f * cy * y
        # 0.25 cos(ax + ay) = 0.25 (cos ax cos ay - sin ax sin ay), as two outer products
        total += np.outer((0.25 * np.cos(ay)).astype(np.float32), np.cos(ax).astype(np.float32))
        total -= np.outer((0.25 * np.sin(ay)).astype(np.float32), np.sin(ax).astype(np.float32))
    return total


@register("halftone", family="scan", severities=HALFTONE, sampler=_sample_halftone)
def halftone(image: np.ndarray, params: Params) -> np.ndarray:
    """CMYK dot screen at rotated angles, rescanned at another resolution (moire)."""
    h, w = image.shape[:2]
    period = float(params["period"])
    if not period > 0:
        raise ValueError(f"halftone 'period' must be positive, got {params['period']!r}")
    ink = cv2.bitwise_not(image)
    c, m, y = cv2.split(ink)
    black = cv2.min(cv2.min(c, m), y)
    # Grey-component replacement: the shared part of C, M, Y prints as black.
    cmy = cv2.subtract(ink, cv2.merge([black, black, black]))
    # The colour screens are independent of the black one, so a colour dot falls on black
    # ink with probability k and adds nothing there: coverage c/(1-k) makes the union
    # c + k, and a flat tint prints at its own tone (otherwise dark colours wash out).
    free = cv2.subtract(np.full_like(black, 255), black).astype(np.float32)
    cmy = cv2.convertScaleAbs(cmy.astype(np.float32) * (255.0 / np.maximum(free, 1.0))[:, :, None])
    rotation = float(params["rotation"])

    def dots(separation: np.ndarray, angle: float) -> np.ndarray:
        return _screen((h, w), period, angle + rotation) < _THRESHOLDS[separation]

    k_dots = dots(black, SCREEN_ANGLES[3])
    # Cyan ink absorbs red, magenta green, yellow blue; black absorbs all three.
    channels = [~(dots(cmy[:, :, i], SCREEN_ANGLES[i]) | k_dots) for i in range(3)]
    printed = np.stack(channels, axis=2).view(np.uint8) * np.uint8(255)
    sigma = float(params["blur"])
    if sigma > 0:
        printed = cv2.GaussianBlur(printed, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    scale = float(params["scan_scale"])
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    if small != (w, h):
        # Linear resampling without a prefilter aliases the dots: that is the moire.
        printed = cv2.resize(printed, small, interpolation=cv2.INTER_LINEAR)
        printed = cv2.resize(printed, (w, h), interpolation=cv2.INTER_LINEAR)
    return printed


# ------------------------------------------------------------------ stroke blur

# sigma: optical blur in pixels; radius: choices of the stroke morphology radius in pixels.
# A radius-1 "thin" erases 1-px strokes outright, so severity 1 changes no stroke width
# (mild: text stays legible) and severity 2 does so in half of its samples.
STROKE_BLUR: tuple[dict, ...] = (
    {"sigma": (0.5, 0.8), "radius": (0,)},
    {"sigma": (0.8, 1.1), "radius": (0, 1)},
    {"sigma": (1.1, 1.5), "radius": (1,)},
    {"sigma": (1.5, 2.0), "radius": (1, 2)},
    {"sigma": (2.0, 2.8), "radius": (2,)},
)
STROKE_CHANGES: tuple[str, ...] = ("thicken", "thin")


def _sample_stroke_blur(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = STROKE_BLUR[level - 1]
    u = rng.random(3)
    return {"sigma": _lerp(row["sigma"], u[0]), "radius": int(row["radius"][_index(len(row["radius"]), u[1])]),
            "stroke": STROKE_CHANGES[_index(2, u[2])]}


@register("stroke_blur", family="scan", severities=STROKE_BLUR, sampler=_sample_stroke_blur)
def stroke_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Poor scan or fax of text: ink spread or lost around dark strokes, then blurred."""
    radius = params["radius"]
    if isinstance(radius, bool) or int(radius) != radius or radius < 0:
        raise ValueError(f"stroke_blur 'radius' must be an integer >= 0, got {radius!r}")
    stroke = params["stroke"]
    if stroke not in STROKE_CHANGES:
        raise ValueError(f"stroke_blur 'stroke' must be one of {', '.join(STROKE_CHANGES)}, got {stroke!r}")
    out = image
    if radius > 0:
        element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(radius) + 1,) * 2)
        # Strokes are dark: a minimum filter grows them, a maximum filter eats them.
        morph = cv2.erode if stroke == "thicken" else cv2.dilate
        out = morph(out, element, borderType=cv2.BORDER_REPLICATE)
    sigma = float(params["sigma"])
    if sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return out.copy() if out is image else out
