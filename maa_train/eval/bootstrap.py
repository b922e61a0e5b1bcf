"""Percentile bootstrap intervals of a mean over items (images), with a fixed seed.

A paired difference is the mean of per-item differences (model A minus model B on the same
images), so it goes through the same function: resampling images keeps the pairing.
"""
from __future__ import annotations

import numpy as np

DEFAULT_REPS = 2000
LEVEL = 0.95
_CHUNK = 256  # replicates drawn at a time: reps x n indices would not fit for large n


def mean_interval(values, reps: int = DEFAULT_REPS, seed: int = 0, level: float = LEVEL) -> dict:
    """{"value": mean, "lo", "hi": percentile interval at ``level``, "n"} over the items of
    ``values``; lo/hi are None for fewer than 2 items or ``reps`` = 0."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = len(v)
    out = {"value": float(v.mean()) if n else None, "lo": None, "hi": None, "n": n}
    if n < 2 or reps < 1:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(reps)
    for start in range(0, reps, _CHUNK):
        stop = min(reps, start + _CHUNK)
        means[start:stop] = v[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    out.update(lo=float(lo), hi=float(hi))
    return out


def percentile_interval(samples, level: float = LEVEL) -> tuple[float | None, float | None]:
    """(lo, hi) of already drawn bootstrap replicates (NaNs dropped)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) < 2:
        return None, None
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(s, [tail, 1.0 - tail])
    return float(lo), float(hi)
