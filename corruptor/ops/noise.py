"""Noise corruptions of ImageNet-C: Gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Severity parameters match `imagecorruptions` 1.1.2. Every noise field is drawn from a
Generator seeded by the ``seed`` param, so an op is a pure function of (image, params).
Each colour channel of each pixel gets its own independent draw, as in the reference.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from corruptor.ops.normal import standard_normal
from corruptor.ops.params import generator, number
from corruptor.ops.registry import register, table_sampler

SUITES = ("imagenet-c",)

# Standard deviation of additive noise, on intensities in [0, 1].
GAUSSIAN_NOISE = tuple({"sigma": s} for s in (0.08, 0.12, 0.18, 0.26, 0.38))
# Expected photon count at full intensity: lower means fewer photons and more noise.
SHOT_NOISE = tuple({"photons": p} for p in (60.0, 25.0, 12.0, 5.0, 3.0))
# Fraction of channel values replaced, half by 0 (pepper) and half by 255 (salt).
IMPULSE_NOISE = tuple({"amount": a} for a in (0.03, 0.06, 0.09, 0.17, 0.27))
# Standard deviation of multiplicative noise: x + x * N(0, sigma).
SPECKLE_NOISE = tuple({"sigma": s} for s in (0.15, 0.2, 0.35, 0.45, 0.6))


def _finish(values: np.ndarray) -> np.ndarray:
    """Float intensities on the 0..255 scale to uint8, rounded and clipped (in place)."""
    np.clip(values, 0.0, 255.0, out=values)
    np.rint(values, out=values)
    return values.astype(np.uint8)


@register("gaussian_noise", family="noise", severities=GAUSSIAN_NOISE,
          sampler=table_sampler(GAUSSIAN_NOISE, seeded=True), suites=SUITES)
def gaussian_noise(image: np.ndarray, params: dict) -> np.ndarray:
    """Additive zero-mean Gaussian noise, independent per pixel and channel."""
    sigma = number(params, "sigma", "gaussian_noise", low=0.0)
    noise = standard_normal(generator(params, "gaussian_noise"), image.shape)
    noise *= np.float32(sigma * 255.0)
    noise += image
    return _finish(noise)


# Guide-table resolution of the Poisson sampler: 2**12 cells of the unit interval.
_GUIDE_BITS = 12


@functools.lru_cache(maxsize=16)
def _poisson_tables(photons: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-CDF tables of Poisson(v / 255 * photons) for every uint8 level v.

    Returns the CDFs (256 x K) and, per level and guide cell [j/M, (j+1)/M), the smallest
    and largest count a uniform draw in the cell can map to. Most cells hold one count, so
    a draw is resolved by one table lookup; only the rest are refined against the CDF.
    """
    lam = np.arange(256, dtype=np.float64) / 255.0 * photons
    kmax = int(photons + 12.0 * math.sqrt(photons) + 16.0)  # tail beyond: mass < 1e-20
    k = np.arange(kmax + 1, dtype=np.float64)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, kmax + 1)))])
    with np.errstate(divide="ignore", invalid="ignore"):  # level 0: log(0) and 0 * -inf
        log_lam = np.log(lam)[:, None]
        log_pmf = np.where(k == 0, 0.0, k * log_lam) - lam[:, None] - log_factorial
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    cdf[:, -1] = np.inf  # every draw in [0, 1) lands at or before kmax
    cells = 1 << _GUIDE_BITS
    edges = np.arange(cells + 1, dtype=np.float64) / cells
    first = np.empty((256, cells), dtype=np.uint16)
    last = np.empty((256, cells), dtype=np.uint16)
    for level in range(256):
        first[level] = np.searchsorted(cdf[level], edges[:-1], side="right")
        last[level] = np.searchsorted(cdf[level], edges[1:], side="left")
    tables = (cdf, first.ravel(), last.ravel())
    for table in tables:
        table.setflags(write=False)  # shared by every call through the cache
    return tables


def _poisson_counts(image: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson(image / 255 * photons) per value, by inverse CDF over per-level tables."""
    cdf, first, last = _poisson_tables(photons)
    u = rng.random(image.shape)
    cell = (image.astype(np.int32) << _GUIDE_BITS) | (u * (1 << _GUIDE_BITS)).astype(np.int32)
    counts = first[cell]
    open_cells = np.flatnonzero(last[cell] > counts)
    if open_cells.size:
        level = image.reshape(-1)[open_cells].astype(np.intp)
        draw = u.reshape(-1)[open_cells]
        k = counts.reshape(-1)[open_cells].astype(np.intp)
        # Count = number of CDF entries <= draw; step until the next entry exceeds it.
        while True:
            step = cdf[level, k] <= draw
            if not step.any():
                break
            k += step
        counts.reshape(-1)[open_cells] = k
    return counts


@register("shot_noise", family="noise", severities=SHOT_NOISE,
          sampler=table_sampler(SHOT_NOISE, seeded=True), suites=SUITES)
def shot_noise(image: np.ndarray, params: dict) -> np.ndarray:
    """Photon (Poisson) noise: counts ~ Poisson(x * photons), rescaled by 1 / photons."""
    photons = number(params, "photons", "shot_noise", low=0.0, high=1000.0, low_open=True)
    counts = _poisson_counts(image, photons, generator(params, "shot_noise"))
    values = counts.astype(np.float32)
    values *= np.float32(255.0 / photons)
    return _finish(values)


# Impulse noise draws one 16-bit integer per value: a value turns to pepper below
# round(amount * 2**15) and to salt below twice that, so salt and pepper are equally likely
# and the total is within 2**-16 of ``amount``.
_IMPULSE_HALF = 1 << 15


@register("impulse_noise", family="noise", severities=IMPULSE_NOISE,
          sampler=table_sampler(IMPULSE_NOISE, seeded=True), suites=SUITES)
def impulse_noise(image: np.ndarray, params: dict) -> np.ndarray:
    """Salt and pepper: each channel value becomes 0 or 255 with probability ``amount``."""
    amount = number(params, "amount", "impulse_noise", low=0.0, high=1.0)
    pepper = round(amount * _IMPULSE_HALF)
    rows = image.shape[0]
    draws = np.frombuffer(generator(params, "impulse_noise").bytes(2 * image.size), dtype="<u2")
    draws = draws.reshape(rows, -1)
    # Masks as 0/255 bytes, applied by max (salt and pepper become 255) and min (pepper 0):
    # four byte-wise passes, no boolean indexing.
    flipped = cv2.compare(draws, 2 * pepper, cv2.CMP_LT)
    kept = cv2.compare(draws, pepper, cv2.CMP_GE)
    out = cv2.min(cv2.max(np.ascontiguousarray(image).reshape(rows, -1), flipped), kept)
    return out.reshape(image.shape)


@register("speckle_noise", family="noise", severities=SPECKLE_NOISE,
          sampler=table_sampler(SPECKLE_NOISE, seeded=True), suites=SUITES)
def speckle_noise(image: np.ndarray, params: dict) -> np.ndarray:
    """Multiplicative Gaussian noise: bright values get proportionally more of it."""
    sigma = number(params, "sigma", "speckle_noise", low=0.0)
    noise = standard_normal(generator(params, "speckle_noise"), image.shape)
    noise *= np.float32(sigma)
    noise += np.float32(1.0)
    noise *= image
    return _finish(noise)
