"""Fast standard-normal fields for image noise.

NumPy's ziggurat costs about 20 ns a sample; image noise needs millions per image. Here
each sample is 16 random bits mapped through a table of normal quantiles at the centres of
65536 equal-probability bins: mean 0, variance 1 within 1e-3, tails cut at 4.3 sigma,
which no 8-bit image can tell from the exact distribution. Deterministic per generator.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_BINS = 1 << 16
_QUANTILES = ndtri((np.arange(_BINS, dtype=np.float64) + 0.5) / _BINS).astype(np.float32)
_QUANTILES /= np.float32(np.sqrt(np.mean(_QUANTILES.astype(np.float64) ** 2)))  # unit variance


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of independent N(0, 1) samples drawn from ``rng``."""
    n = int(np.prod(shape, dtype=np.int64))
    bits = np.frombuffer(rng.bytes(2 * n), dtype="<u2")
    return np.take(_QUANTILES, bits).reshape(shape)
