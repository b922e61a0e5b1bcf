"""Blur corruptions of ImageNet-C: defocus, glass, motion, zoom and Gaussian blur.

Severity parameters match `imagecorruptions` 1.1.2; the filtering is done with OpenCV calls
on uint8 data (defocus blur strip by strip), so every op is a handful of passes over the
image. Borders
follow the reference: Gaussian, motion and zoom blur repeat the edge pixels, defocus blur
reflects about them. Random parts (glass blur's pixel shuffle, motion blur's direction)
are params: a ``seed`` and an ``angle``.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from corruptor.ops.params import generator, integer, number
from corruptor.ops.registry import Params, register, table_sampler

SUITES = ("imagenet-c",)

# Standard deviation (pixels) of the Gaussian kernel.
GAUSSIAN_BLUR = tuple({"sigma": s} for s in (1.0, 2.0, 3.0, 4.0, 6.0))
# Disk radius (pixels) and the Gaussian sigma that anti-aliases the disk's rim.
DEFOCUS_BLUR = (
    {"radius": 3, "alias_blur": 0.1}, {"radius": 4, "alias_blur": 0.5},
    {"radius": 6, "alias_blur": 0.5}, {"radius": 8, "alias_blur": 0.5},
    {"radius": 10, "alias_blur": 0.5},
)
# Streak length is 2 * radius + 1 pixels, weighted by a half-Gaussian of ``sigma`` pixels
# that fades along the streak; the direction is drawn per image in MOTION_ANGLE_RANGE.
MOTION_BLUR = (
    {"radius": 10, "sigma": 3.0}, {"radius": 15, "sigma": 5.0}, {"radius": 15, "sigma": 8.0},
    {"radius": 15, "sigma": 12.0}, {"radius": 20, "sigma": 15.0},
)
MOTION_ANGLE_RANGE = (-45.0, 45.0)
# Zoom factors 1, 1 + step, ..., max_zoom, averaged together with the image itself.
ZOOM_BLUR = (
    {"max_zoom": 1.11, "step": 0.01}, {"max_zoom": 1.15, "step": 0.01},
    {"max_zoom": 1.20, "step": 0.02}, {"max_zoom": 1.24, "step": 0.02},
    {"max_zoom": 1.30, "step": 0.03},
)
# Gaussian sigma applied before and after the shuffle, the largest step of the shuffle
# scan (steps are drawn in [-max_delta, max_delta - 1]) and how many scans are made.
GLASS_BLUR = tuple(
    {"sigma": sigma, "max_delta": max_delta, "iterations": iterations}
    for sigma, max_delta, iterations in ((0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
)

# Kernel support of the Gaussian, in sigmas (SciPy's and scikit-image's default).
GAUSSIAN_TRUNCATE = 4.0
# gaussian_blur's support: beyond 3.1 sigma both tails together hold erfc(3.1 / sqrt 2) =
# 0.19% of the weight, under half a uint8 level even on a 0/255 edge, so the output is the
# 4-sigma one to within rounding (PSNR vs imagecorruptions unchanged) with 19 taps at
# severity 3 instead of 25.
GAUSSIAN_BLUR_TRUNCATE = 3.1


def _to_uint8(values: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Non-negative float image times ``scale``, rounded and saturated to uint8 in one pass."""
    return cv2.convertScaleAbs(values, alpha=scale)


@functools.lru_cache(maxsize=32)
def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    """1-D Gaussian of ``size`` taps, normalised; cached because each op uses a few sigmas."""
    taps = cv2.getGaussianKernel(size, sigma, cv2.CV_32F)
    taps.setflags(write=False)
    return taps


def gaussian(image: np.ndarray, sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """Gaussian blur of a uint8 image, edges repeated, support +-``truncate`` sigma.

    sepFilter2D's float row and column passes round once, at the end; GaussianBlur's 8-bit
    path (bit-exact fixed point) is 25-40% slower here and off the exact Gaussian by up to
    one level more often.
    """
    radius = int(truncate * sigma + 0.5)
    if radius < 1:
        return image.copy()
    taps = _gaussian_taps(2 * radius + 1, float(sigma))
    return cv2.sepFilter2D(image, -1, taps, taps, borderType=cv2.BORDER_REPLICATE)


@register("gaussian_blur", family="blur", severities=GAUSSIAN_BLUR,
          sampler=table_sampler(GAUSSIAN_BLUR), suites=SUITES)
def gaussian_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Gaussian blur."""
    return gaussian(image, number(params, "sigma", "gaussian_blur", low=0.0, high=100.0),
                    truncate=GAUSSIAN_BLUR_TRUNCATE)


def _disk_rows(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets dy of a digital disk and the half-width of each row: x^2 + y^2 <= r^2."""
    reach = int(math.floor(radius))
    rows = np.arange(-reach, reach + 1)
    widths = np.floor(np.sqrt(np.maximum(radius**2 - rows.astype(np.float64) ** 2, 0.0)))
    return rows, widths.astype(int)


def _alias_size(radius: float) -> int:
    # The reference softens disks up to radius 8 with a 3 x 3 Gaussian, larger ones 5 x 5.
    return 3 if radius <= 8 else 5


@functools.lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """Normalised digital disk of ``radius``, its rim softened by a small Gaussian.

    Same disk and Gaussian as the reference; unlike it, the Gaussian is not folded back at
    the edge of a fixed 17 x 17 grid, so the kernel sums to 1 (the reference's brightens
    the image by about 1% at radius 8 and above).
    """
    rows, widths = _disk_rows(radius)
    smooth = _alias_size(radius)
    half = rows[-1] + smooth // 2
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float64)
    for dy, w in zip(rows, widths):
        kernel[half + dy, half - w:half + w + 1] = 1.0
    kernel /= kernel.sum()
    kernel = cv2.GaussianBlur(kernel, (smooth, smooth), sigmaX=alias_blur,
                              borderType=cv2.BORDER_CONSTANT).astype(np.float32)
    kernel.setflags(write=False)
    return kernel


# Output rows per strip of the disk filter. A strip's int32 temporaries stay near 1 MB at
# 512 px (within L2) and are reused strip after strip; the whole-image version streamed
# 3 MB arrays through the shared cache and page-faulted fresh ones, and ran 3-5x its quiet
# CPU time on a loaded machine.
_STRIP_ROWS = 64


def _disk_sums(band: np.ndarray, runs: list[tuple[int, np.ndarray]], reach: int,
               out_h: int, out_w: int) -> np.ndarray:
    """Exact int32 disk sums of the ``out_h`` x ``out_w`` pixels whose disk lies inside
    ``band``: per half-width w one row run (a difference of row prefix sums), added at
    each row offset dy of that width."""
    integral = cv2.integral(band, sdepth=cv2.CV_32S)
    sums = cv2.subtract(integral[1:], integral[:-1])  # sums[y, j] = sum of band[y, :j]
    total = None
    for w, offsets in runs:
        run = cv2.subtract(sums[:, reach + w + 1:reach + w + 1 + out_w], sums[:, reach - w:reach - w + out_w])
        for dy in offsets:
            part = run[reach + dy:reach + dy + out_h]
            total = part.copy() if total is None else cv2.add(total, part, dst=total)
    return total


def _disk_by_runs(image: np.ndarray, radius: float, alias_blur: float) -> np.ndarray:
    """``disk_kernel`` applied as row runs, then the anti-alias Gaussian, strip by strip:
    O(radius) passes over each strip instead of O(radius^2) taps."""
    height, width = image.shape[:2]
    rows, widths = _disk_rows(radius)
    reach = int(rows[-1])
    smooth = _alias_size(radius)
    edge = smooth // 2
    scale = 1.0 / float(np.sum(2 * widths + 1))
    pad = reach + edge
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    runs = [(int(w), rows[widths == w]) for w in np.unique(widths)]
    out = np.empty_like(image)
    for top in range(0, height, _STRIP_ROWS):
        count = min(_STRIP_ROWS, height - top)
        # Disk sums with an `edge` margin all round, which the Gaussian reads.
        total = _disk_sums(padded[top:top + count + 2 * pad], runs, reach, count + 2 * edge, width + 2 * edge)
        blurred = cv2.GaussianBlur(total.astype(np.float32), (smooth, smooth), sigmaX=alias_blur)
        out[top:top + count] = _to_uint8(blurred[edge:edge + count, edge:edge + width], scale)
    return out


@register("defocus_blur", family="blur", severities=DEFOCUS_BLUR,
          sampler=table_sampler(DEFOCUS_BLUR), suites=SUITES)
def defocus_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Out-of-focus blur: convolution with an anti-aliased disk (``disk_kernel``)."""
    radius = number(params, "radius", "defocus_blur", low=0.0, high=100.0)
    alias_blur = number(params, "alias_blur", "defocus_blur", low=0.0, high=10.0, low_open=True)
    return _disk_by_runs(image, radius, alias_blur)


def motion_kernel(radius: int, sigma: float, angle: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Streak kernel and its anchor (x, y) for ``cv2.filter2D``.

    Tap i (0..2 * radius) has weight exp(-i^2 / 2 sigma^2) and reads the pixel i steps away
    in direction (cos angle, sin angle), x to the right and y down (angle in degrees, so a
    positive angle points down-right), rounded to the grid as the reference rounds its
    shifts. Edge pixels repeat, as in the reference.
    """
    taps = np.arange(2 * radius + 1, dtype=np.float64)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    theta = math.radians(angle)
    rows = np.ceil(taps * math.sin(theta) - 0.5).astype(np.int64)
    cols = np.ceil(taps * math.cos(theta) - 0.5).astype(np.int64)
    kernel = np.zeros((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1), np.float32)
    np.add.at(kernel, (rows - rows.min(), cols - cols.min()), weights.astype(np.float32))
    return kernel, (int(-cols.min()), int(-rows.min()))


def _motion_sampler(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    return {**MOTION_BLUR[level - 1], "angle": float(rng.uniform(*MOTION_ANGLE_RANGE))}


@register("motion_blur", family="blur", severities=MOTION_BLUR, sampler=_motion_sampler,
          suites=SUITES)
def motion_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Linear motion streak in direction ``angle`` (degrees), fading along its length."""
    radius = integer(params, "radius", "motion_blur", low=0, high=200)
    sigma = number(params, "sigma", "motion_blur", low=0.0, high=1000.0, low_open=True)
    angle = number(params, "angle", "motion_blur", low=-360.0, high=360.0)
    kernel, (ax, ay) = motion_kernel(radius, sigma, angle)
    height, width = image.shape[:2]
    # A streak has few taps in a large box: shifted adds beat filter2D's DFT by far.
    padded = cv2.copyMakeBorder(image, ay, kernel.shape[0] - 1 - ay, ax, kernel.shape[1] - 1 - ax,
                                cv2.BORDER_REPLICATE).astype(np.float32)
    total = np.zeros(image.shape, np.float32)
    for i, j in np.argwhere(kernel > 0):
        cv2.scaleAdd(padded[i:i + height, j:j + width], float(kernel[i, j]), total, dst=total)
    return _to_uint8(total)


def zoom_factors(max_zoom: float, step: float) -> np.ndarray:
    count = int(math.floor((max_zoom - 1.0) / step + 1e-6))
    return 1.0 + step * np.arange(count + 1)


def _zoom_matrix(height: int, width: int, zoom: float) -> np.ndarray:
    """Inverse map of the reference's zoom: crop the central 1/zoom of the image, resize it
    (corner-aligned linear interpolation) to ``round(crop * zoom)``, keep the top-left part."""
    matrix = np.zeros((2, 3), np.float64)
    for axis, size in enumerate((width, height)):
        crop = math.ceil(size / zoom)
        grown = round(crop * zoom)
        matrix[axis, axis] = (crop - 1) / (grown - 1) if grown > 1 else 0.0
        matrix[axis, 2] = (size - crop) // 2
    return matrix


@register("zoom_blur", family="blur", severities=ZOOM_BLUR, sampler=table_sampler(ZOOM_BLUR),
          suites=SUITES)
def zoom_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Radial blur: the mean of the image and copies zoomed about its centre."""
    max_zoom = number(params, "max_zoom", "zoom_blur", low=1.0, high=4.0)
    step = number(params, "step", "zoom_blur", low=0.0, high=3.0, low_open=True)
    height, width = image.shape[:2]
    total = image.astype(np.float32)
    factors = zoom_factors(max_zoom, step)
    for zoom in factors:
        layer = cv2.warpAffine(image, _zoom_matrix(height, width, zoom), (width, height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        cv2.accumulate(layer, total)
    return _to_uint8(total, 1.0 / (len(factors) + 1))


def scan_sources(height: int, width: int, max_delta: int, jumps: np.ndarray) -> np.ndarray:
    """Flat source index of every pixel after the reference's glass-blur scans.

    The reference visits pixels (rows and columns max_delta + 1 .. size - max_delta) from
    the bottom-right corner to the top-left one, and at each copies in the current value of
    the pixel at a random step (dx, dy) in [-max_delta, max_delta - 1]^2 (its "swap" of two
    NumPy views is in effect a copy). Copying from an already visited pixel copies that
    pixel's own copied value, so sources chain. We resolve all chains of a scan at once by
    pointer doubling, then compose the scans. ``jumps``: (scans, rows, cols) integers, the
    step of each visited pixel as a flat offset dy * width + dx, rows and columns ascending.
    """
    d = max_delta
    count = height * width
    source = np.arange(count, dtype=np.int32)
    if height <= 2 * d or width <= 2 * d:
        return source
    inner = (slice(d + 1, height - d + 1), slice(d + 1, width - d + 1))
    visited = source.reshape(height, width)[inner]
    in_block = np.zeros((height, width), dtype=bool)
    in_block[inner] = True
    in_block = in_block.ravel()
    for scan in jumps:
        target = visited + scan.astype(np.int32, copy=False)
        node = np.arange(count, dtype=np.int32)
        node.reshape(height, width)[inner] = target
        # Visits run in descending raster order: a visited target later in raster order
        # had already been overwritten when it is copied from.
        follow = np.zeros(count, dtype=bool)
        follow.reshape(height, width)[inner] = (target > visited) & in_block[target]
        active = np.flatnonzero(follow)
        while active.size:
            hop = node[active]
            node[active] = node[hop]
            follow[active] = follow[hop]
            active = active[follow[active]]
        source = source[node]
    return source


def shuffle_pixels(image: np.ndarray, max_delta: int, iterations: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The reference's local pixel shuffle, with steps drawn from ``rng``."""
    height, width = image.shape[:2]
    span = 2 * max_delta
    rows, cols = max(height - span, 0), max(width - span, 0)
    # One draw per visit picks the step among the span^2 choices; a table turns it into a
    # flat offset.
    choice = rng.integers(0, span * span, size=(iterations, rows, cols),
                          dtype=np.uint16 if span * span > 256 else np.uint8)
    dy, dx = np.divmod(np.arange(span * span, dtype=np.int32), span)
    jumps = ((dy - max_delta) * width + (dx - max_delta))[choice]
    source = scan_sources(height, width, max_delta, jumps)
    return np.take(image.reshape(height * width, -1), source, axis=0).reshape(image.shape)


@register("glass_blur", family="blur", severities=GLASS_BLUR,
          sampler=table_sampler(GLASS_BLUR, seeded=True), suites=SUITES)
def glass_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Frosted glass: blur, shuffle pixels locally as the reference's scan does, blur again."""
    sigma = number(params, "sigma", "glass_blur", low=0.0, high=100.0)
    max_delta = integer(params, "max_delta", "glass_blur", low=1, high=10)
    iterations = integer(params, "iterations", "glass_blur", low=1, high=5)
    shuffled = shuffle_pixels(gaussian(image, sigma), max_delta, iterations,
                              generator(params, "glass_blur"))
    return gaussian(shuffled, sigma)
