"""Percentile bootstrap intervals of a mean over items (images), with a fixed seed.

A paired difference is the mean of per-item differences (model A minus model B on the same
images), so it goes through the same function: resampling images keeps the pairing.

Over several training runs (seeds) scored on the same test images, ``two_level_replicates``
resamples both: each replicate draws the seeds with replacement and, in the same draw, the
images with replacement, and takes the mean over the drawn (seed, image) cells. Seeds and
images are crossed (every seed sees every image), so one image draw serves every drawn seed
and every row: differences of two rows' replicates are paired. ``seed_replicates`` does the
seed half for statistics that are not means over images (MMD^2 and the like), whose image
resampling already happened inside each run with draws that are the same in every run.
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


def _counts(rng: np.random.Generator, reps: int, n: int) -> np.ndarray:
    """[reps, n] how often each of n units is drawn when n are drawn with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=reps).astype(np.float64)


def two_level_replicates(values, reps: int = DEFAULT_REPS, seed: int = 0) -> np.ndarray:
    """values [rows, seeds, items] (NaN: no value, e.g. an image a condition failed on) ->
    [rows, reps]: per replicate, the mean over seeds and items both resampled with replacement,
    the same draw for every row."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"expected values [rows, seeds, items], got shape {x.shape}")
    rows, seeds, items = x.shape
    have = np.isfinite(x).astype(np.float64)
    filled = np.where(have > 0, x, 0.0)
    rng = np.random.default_rng(seed)
    out = np.empty((rows, reps))
    for start in range(0, reps, _CHUNK):
        stop = min(reps, start + _CHUNK)
        c = _counts(rng, stop - start, seeds)  # [k, seeds]
        d = _counts(rng, stop - start, items)  # [k, items]
        total = ((filled @ d.T) * c.T[None]).sum(axis=1)  # [rows, k]
        weight = ((have @ d.T) * c.T[None]).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, start:stop] = np.where(weight > 0, total / weight, np.nan)
    return out


def seed_replicates(replicates, seed: int = 0) -> np.ndarray:
    """replicates [rows, seeds, reps] (each seed's own bootstrap replicates, drawn alike in every
    run) -> [rows, reps]: replicate b is the mean of replicate b over seeds resampled with
    replacement, the same seed draw for every row."""
    r = np.asarray(replicates, dtype=np.float64)
    if r.ndim != 3 or 0 in r.shape:
        raise ValueError(f"expected replicates [rows, seeds, reps], got shape {r.shape}")
    c = _counts(np.random.default_rng(seed), r.shape[2], r.shape[1])  # [reps, seeds]
    return np.einsum("vsb,bs->vb", r, c) / r.shape[1]
