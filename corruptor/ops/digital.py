"""Digital corruptions of ImageNet-C: photometric shifts, elastic warp, pixelation, JPEG.

Severity parameters are those of `imagecorruptions` 1.1.2, so both backends damage an
image by the same amount; the implementations are our own (OpenCV and vectorised NumPy).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from corruptor.ops.params import generator, integer, number
from corruptor.ops.registry import Params, register, table_sampler

SUITES = ("imagenet-c",)

# Value (HSV) raised by `shift`, hue and saturation kept.
BRIGHTNESS = tuple({"shift": s} for s in (0.1, 0.2, 0.3, 0.4, 0.5))

# Distance of every pixel from its channel mean scaled by `factor`.
CONTRAST = tuple({"factor": f} for f in (0.4, 0.3, 0.2, 0.1, 0.05))

# Saturation mapped to clip(S * scale + offset, 0, 1); levels 1-2 wash out, 3-5 boost.
SATURATE = (
    {"scale": 0.3, "offset": 0.0},
    {"scale": 0.1, "offset": 0.0},
    {"scale": 2.0, "offset": 0.0},
    {"scale": 5.0, "offset": 0.1},
    {"scale": 20.0, "offset": 0.2},
)

# A uniform displacement field of amplitude `max_shift` * height, smoothed by a Gaussian of
# `sigma` * (height, width) truncated at 3 sigma, then multiplied by `alpha`.
ELASTIC = tuple({"alpha": a, "sigma": 0.01, "max_shift": 0.005}
                for a in (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12))

# Box-downscale to `factor` of the size, nearest-neighbour back up.
PIXELATE = tuple({"factor": f} for f in (0.6, 0.5, 0.4, 0.3, 0.25))

# Baseline JPEG at `quality` (libjpeg scale, 4:2:0 chroma as Pillow's default).
JPEG = tuple({"quality": q} for q in (25, 18, 15, 10, 7))


def _channels(image: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    channels = list(cv2.split(np.ascontiguousarray(image)))
    value = cv2.max(cv2.max(channels[0], channels[1]), channels[2])
    low = cv2.min(cv2.min(channels[0], channels[1]), channels[2])
    return channels, value, low


@functools.lru_cache(maxsize=32)
def _brightness_gain(shift: float) -> tuple[np.ndarray, int]:
    """Per-V gain V_new / V (float32 table), and the grey level black turns into."""
    v = np.arange(256, dtype=np.float64) / 255.0
    v_new = np.clip(v + shift, 0.0, 1.0)
    gain = np.divide(v_new, v, out=np.zeros_like(v), where=v > 0).astype(np.float32)
    gain.setflags(write=False)  # shared by every call through the cache
    return gain, int(round(v_new[0] * 255.0))


@register("brightness", family="digital", severities=BRIGHTNESS,
          sampler=table_sampler(BRIGHTNESS), suites=SUITES)
def brightness(image: np.ndarray, params: Params) -> np.ndarray:
    """Raise HSV value by a constant, keeping hue and saturation."""
    gain, black_grey = _brightness_gain(number(params, "shift", "brightness", low=-1.0, high=1.0))
    channels = cv2.split(np.ascontiguousarray(image))
    value = cv2.max(cv2.max(channels[0], channels[1]), channels[2])
    # At fixed hue and saturation every RGB channel is proportional to V, so the op is a
    # per-pixel gain that depends on V alone: a 256-entry table. Per channel: OpenCV's
    # table lookup costs as much per byte as the multiply, so it runs on V once, not 3x.
    pixel_gain = cv2.LUT(value, gain)
    out = [cv2.multiply(c, pixel_gain, dtype=cv2.CV_8U) for c in channels]
    # Black has no hue; it becomes the grey of the new value (a max, as its output is 0).
    if black_grey and cv2.countNonZero(value) < value.size:
        grey = cv2.min(cv2.compare(value, 0, cv2.CMP_EQ), black_grey)
        out = [cv2.max(c, grey, dst=c) for c in out]
    return cv2.merge(out)


@register("contrast", family="digital", severities=CONTRAST,
          sampler=table_sampler(CONTRAST), suites=SUITES)
def contrast(image: np.ndarray, params: Params) -> np.ndarray:
    """Pull every channel towards its mean."""
    factor = number(params, "factor", "contrast", low=0.0, high=10.0)
    image = np.ascontiguousarray(image)
    means = np.asarray(cv2.mean(image)[:3], dtype=np.float64)
    # (x - mean) * factor + mean per channel: one affine colour matrix, which OpenCV applies
    # to bytes in one vectorised pass (a 3-channel lookup table costs about 5x more).
    matrix = np.hstack([np.diag(np.full(3, factor)), (means * (1.0 - factor))[:, None]])
    return cv2.transform(image, matrix)


def _saturation_ratio(scale: float, offset: float) -> tuple[np.ndarray, float]:
    """Table of S_new / S indexed by (V, min channel), and S_new of grey pixels."""
    v = np.arange(256, dtype=np.float64)[:, None]
    low = np.arange(256, dtype=np.float64)[None, :]
    s = np.divide(v - low, v, out=np.zeros((256, 256)), where=(v > 0) & (low <= v))
    s_new = np.clip(s * scale + offset, 0.0, 1.0)
    ratio = np.divide(s_new, s, out=np.zeros_like(s), where=s > 0)
    return ratio.astype(np.float32).ravel(), float(np.clip(offset, 0.0, 1.0))


@register("saturate", family="digital", severities=SATURATE,
          sampler=table_sampler(SATURATE), suites=SUITES)
def saturate(image: np.ndarray, params: Params) -> np.ndarray:
    """Scale and offset HSV saturation, keeping hue and value."""
    ratio_table, grey_saturation = _saturation_ratio(number(params, "scale", "saturate", low=0.0, high=100.0),
                                                     number(params, "offset", "saturate", low=-1.0, high=1.0))
    channels, value, low = _channels(image)
    ratio = np.take(ratio_table, (value.astype(np.uint16) << 8) | low)
    v = value.astype(np.float32)
    # At fixed hue and value, each channel's distance below V is proportional to S.
    out = [v - (v - c) * ratio for c in channels]
    if grey_saturation > 0:
        # Grey pixels carry hue 0 (red) in the HSV convention ImageNet-C used, so raising
        # their saturation tints them red; kept for calibration with the reference.
        grey = value == low
        for c in out[1:]:
            np.copyto(c, v * np.float32(1.0 - grey_saturation), where=grey)
    return cv2.convertScaleAbs(cv2.merge(out))


def _gaussian_ksize(sigma: float, truncate: float) -> int:
    return 2 * int(truncate * sigma + 0.5) + 1


def _gaussian_kernel(sigma: float) -> np.ndarray:
    return cv2.getGaussianKernel(_gaussian_ksize(sigma, 3.0), sigma, cv2.CV_64F).ravel()


def _variance_kept(sigma: float, size: int, coarse: int) -> float:
    """Variance of white noise after a 1-D Gaussian blur on the coarse grid and linear
    interpolation up to `size` samples (per unit input variance)."""
    k = _gaussian_kernel(sigma)
    power = float(k @ k)
    if coarse == size:
        return power
    lag1 = float(k[1:] @ k[:-1]) / power  # correlation of neighbouring coarse cells
    t = ((np.arange(size) + 0.5) * (coarse / size) - 0.5) % 1.0
    # An interpolated sample mixes two cells with weights 1-t, t.
    return power * float(np.mean(1.0 - 2.0 * t * (1.0 - t) * (1.0 - lag1)))


def _smooth_uniform_noise(rng: np.random.Generator, h: int, w: int, sigma_y: float,
                          sigma_x: float) -> np.ndarray:
    """Uniform [0, 1) noise blurred by a Gaussian (truncated at 3 sigma, mirrored borders).

    A field this smooth is drawn on a grid `step` times coarser, blurred there and brought
    up bilinearly: step**2 fewer draws and less blur work. The noise amplitude is set so
    the field keeps the variance it would have at full resolution (computed from the
    discrete kernels), and the coarse blur keeps sigma >= 2 cells so the interpolation
    hardly changes the field's shape.
    """
    sigma_y, sigma_x = max(sigma_y, 1e-6), max(sigma_x, 1e-6)
    step = max(1, int(min(sigma_y, sigma_x) // 2))
    sh, sw = -(-h // step), -(-w // step)
    cy, cx = sigma_y * sh / h, sigma_x * sw / w
    noise = rng.random((sh, sw), dtype=np.float32)
    if step > 1:
        full = _variance_kept(sigma_y, h, h) * _variance_kept(sigma_x, w, w)
        coarse = _variance_kept(cy, h, sh) * _variance_kept(cx, w, sw)
        gain = np.float32(np.sqrt(full / coarse))
        noise = noise * gain + np.float32(0.5) * (1 - gain)
    field = cv2.GaussianBlur(noise, (_gaussian_ksize(cx, 3.0), _gaussian_ksize(cy, 3.0)),
                             sigmaX=cx, sigmaY=cy, borderType=cv2.BORDER_REFLECT)
    if step > 1:
        field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    return field


@register("elastic_transform", family="digital", severities=ELASTIC,
          sampler=table_sampler(ELASTIC, seeded=True), suites=SUITES)
def elastic_transform(image: np.ndarray, params: Params) -> np.ndarray:
    """Warp by a smooth random displacement field (bilinear, mirrored borders)."""
    h, w = image.shape[:2]
    op = "elastic_transform"
    alpha = number(params, "alpha", op, low=0.0, high=1000.0)
    sigma = number(params, "sigma", op, low=0.0, high=1.0)
    amplitude = number(params, "max_shift", op, low=0.0, high=1.0) * h
    rng = generator(params, op)
    sigma_y, sigma_x = sigma * h, sigma * w
    # Smoothing is linear, so alpha and the uniform range are applied after the blur.
    scale = np.float32(2.0 * amplitude * alpha)
    offset = np.float32(-amplitude * alpha)
    grids = (np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None])
    maps = [_smooth_uniform_noise(rng, h, w, sigma_y, sigma_x) * scale + (grid + offset) for grid in grids]
    return cv2.remap(np.ascontiguousarray(image), maps[0], maps[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _box_bounds(size: int, out: int) -> np.ndarray:
    """Window edges of a box downscale: output pixel i averages source pixels
    [b[i], b[i+1]), those whose centres fall in its footprint (Pillow's BOX filter; unlike
    an exact area average, a partly covered edge pixel counts fully or not at all)."""
    return np.floor(np.arange(out + 1) * (size / out) + 0.5).astype(np.intp)


@functools.lru_cache(maxsize=64)
def _inverse_areas(h: int, small_h: int, w: int, small_w: int) -> np.ndarray:
    """1 / window area per output item (flattened RGB rows), for the box average; cached
    because a dataset repeats a few image sizes."""
    inverse = np.outer(1.0 / np.diff(_box_bounds(h, small_h)),
                       np.repeat(1.0 / np.diff(_box_bounds(w, small_w)), 3)).astype(np.float32)
    inverse.flags.writeable = False
    return inverse


@register("pixelate", family="digital", severities=PIXELATE,
          sampler=table_sampler(PIXELATE), suites=SUITES)
def pixelate(image: np.ndarray, params: Params) -> np.ndarray:
    """Box-average down to a fraction of the size, then blow up with nearest neighbour."""
    factor = number(params, "factor", "pixelate", low=0.0, high=1.0, low_open=True)
    h, w = image.shape[:2]
    small_w, small_h = max(1, int(w * factor)), max(1, int(h * factor))
    # Box sums from one integral image: rows at the window edges, their differences, then
    # the same along columns (an RGB triple is 3 adjacent items of a flattened row).
    depth = cv2.CV_32S if h * w * 255 < 2**31 else cv2.CV_64F
    integral = cv2.integral(np.ascontiguousarray(image), sdepth=depth).reshape(h + 1, (w + 1) * 3)
    rows, cols = _box_bounds(h, small_h), _box_bounds(w, small_w)
    edge_rows = np.take(integral, rows, axis=0)
    band_sums = cv2.subtract(edge_rows[1:], edge_rows[:-1])
    edge_cols = np.take(band_sums, (cols[:, None] * 3 + np.arange(3)).ravel(), axis=1)
    sums = cv2.subtract(edge_cols[:, 3:], edge_cols[:, :-3])
    small = cv2.multiply(sums, _inverse_areas(h, small_h, w, small_w), dtype=cv2.CV_8U).reshape(small_h, small_w, 3)
    # Nearest-neighbour blow-up sampling at pixel centres, as Pillow's NEAREST does: widen the
    # few small rows, then repeat whole rows (a row copy), half the work of one 2-D resize.
    wide = cv2.resize(small, (w, small_h), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.take(wide, _nearest_sources(h, small_h), axis=0).reshape(image.shape)


@functools.lru_cache(maxsize=64)
def _nearest_sources(size: int, small: int) -> np.ndarray:
    """Source index of each of ``size`` outputs blown up from ``small`` by nearest neighbour
    at pixel centres (Pillow's NEAREST), taken from OpenCV's INTER_NEAREST_EXACT itself so
    rows and columns follow the same rule."""
    index = np.arange(small, dtype=np.int32).reshape(small, 1)
    sources = cv2.resize(index, (1, size), interpolation=cv2.INTER_NEAREST_EXACT).ravel().astype(np.intp)
    sources.flags.writeable = False
    return sources


@register("jpeg_compression", family="digital", severities=JPEG,
          sampler=table_sampler(JPEG), suites=SUITES)
def jpeg_compression(image: np.ndarray, params: Params) -> np.ndarray:
    """Encode as JPEG at the given quality and decode again."""
    quality = integer(params, "quality", "jpeg_compression", low=1, high=100)
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
    if not ok:
        raise RuntimeError("jpeg_compression: OpenCV failed to encode the image")
    return cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)
