"""Intervals over seeds AND test images for the ablation over seeds.

Every seed retrains every variant, and every run is scored on the same test images, so a
metric varies with both. Each run of `pipelines.ablation.run` therefore keeps, next to its
table, `per-image.json`: the values per test image behind each mean (probe correctness in
percent per classifier and condition, paired MSE per held-out pair), and for MMD^2, KID and
energy distance (not means over images) the bootstrap replicates the mechanism table drew.

Over N seeds, a metric's cell is then one of three kinds (`KINDS`):

- per-image values in every run, on the same images: a two-level bootstrap
  (maa_train.eval.bootstrap.two_level_replicates). Each replicate resamples the seeds and, in
  the same draw, the test images, and averages the drawn cells; the estimate is the mean over
  all seeds and images. Differences against a reference row use the same draws (paired over
  seeds and images: every variant sees the same test images).
- bootstrap replicates in every run: replicate b of each run resampled the same images (the
  draws depend only on the evaluation seed and the image keys), so replicate b averaged over
  resampled seeds is a two-level replicate (maa_train.eval.bootstrap.seed_replicates); the
  estimate is the mean over seeds.
- otherwise (val L2, CKA, whatever an evaluator gives without per-image values): the 95%
  t-interval over seeds of pipelines/seed_stats.py.

Intervals are 95% percentile intervals of the replicates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from maa_train.eval.bootstrap import DEFAULT_REPS, percentile_interval, seed_replicates, two_level_replicates

PER_IMAGE_FILE = "per-image.json"
IMAGES, REPLICATES, SEEDS = "seeds and test images", "seeds, images resampled in each run", "seeds (t)"
KINDS = (IMAGES, REPLICATES, SEEDS)


def per_image_record(results: dict, row_name: Callable[[str], str | None]) -> dict:
    """One run's per-image values and replicates, keyed by the table's metric names
    (`<evaluator>.<metric>` except for mechanism) and by ``row_name(row)`` (None: left out)."""
    out: dict = {"per_image": {}, "replicates": {}}
    for evaluator, res in results.items():
        prefix = "" if evaluator == "mechanism" else f"{evaluator}."
        if res.per_image:
            for row, metrics in res.per_image["rows"].items():
                for metric, values in metrics.items() if row_name(row) else ():
                    entry = out["per_image"].setdefault(prefix + metric, {"images": res.per_image["images"],
                                                                          "rows": {}})
                    entry["rows"][row_name(row)] = values
        for row, metrics in (res.replicates or {}).items():
            for metric, values in metrics.items() if row_name(row) else ():
                out["replicates"].setdefault(prefix + metric, {})[row_name(row)] = values
    return out


@dataclass
class Draws:
    """One metric's estimates and bootstrap replicates per row (the same draws for every row)."""
    kind: str
    points: dict[str, float | None]
    replicates: dict[str, np.ndarray]
    seeds: int
    images: int | None = None


def _aligned(entry: dict, keys: list[str], name: str) -> list[float] | None:
    """The row's values in the order of ``keys`` (None when the run lacks the row or an image)."""
    values = entry["rows"].get(name)
    if values is None or len(set(entry["images"])) != len(keys) or sorted(entry["images"]) != keys:
        return None
    by_key = dict(zip(entry["images"], values))
    return [math.nan if by_key[k] is None else float(by_key[k]) for k in keys]


def _image_draws(entries: list[dict], names: list[str], reps: int, seed: int) -> Draws | None:
    keys = sorted(entries[0]["images"])  # the read order may differ between runs
    cube = [[_aligned(e, keys, n) for e in entries] for n in names]
    if not keys or any(v is None for row in cube for v in row):
        return None  # a run without this row or on other images: seeds only
    x = np.asarray(cube)  # [rows, seeds, images]
    draws = two_level_replicates(x, reps, seed)
    with np.errstate(invalid="ignore"):
        points = [float(np.nanmean(row)) if np.isfinite(row).any() else None for row in x]
    return Draws(IMAGES, dict(zip(names, points)), dict(zip(names, draws)), len(entries), len(keys))


def _replicate_draws(entries: list[dict], names: list[str], points: dict, seed: int) -> Draws | None:
    cube = [[e.get(n) for e in entries] for n in names]
    lengths = {len(v) for row in cube for v in row if v is not None}
    if any(v is None for row in cube for v in row) or len(lengths) != 1 or lengths == {0}:
        return None
    draws = seed_replicates(np.asarray(cube, dtype=np.float64), seed)
    return Draws(REPLICATES, points, dict(zip(names, draws)), len(entries))


def draws_for(records: list[dict], names: list[str], metric: str, seed_means: dict[str, float | None],
              reps: int = DEFAULT_REPS, seed: int = 0) -> Draws | None:
    """The metric's two-level draws from every run's record, or None (then: seeds only)."""
    images = [r.get("per_image", {}).get(metric) for r in records]
    if records and all(images):
        return _image_draws(images, names, reps, seed)
    replicates = [r.get("replicates", {}).get(metric) for r in records]
    if records and all(replicates):
        return _replicate_draws(replicates, names, seed_means, seed)
    return None


def cell(draws: Draws, name: str) -> dict:
    low, high = percentile_interval(draws.replicates[name])
    return {"mean": draws.points[name], "low": low, "high": high, "n": draws.seeds, "images": draws.images,
            "interval": draws.kind}


def paired_cell(draws: Draws, name: str, reference: str) -> dict:
    a, b = draws.points[name], draws.points[reference]
    low, high = percentile_interval(draws.replicates[name] - draws.replicates[reference])
    return {"mean": None if a is None or b is None else a - b, "low": low, "high": high, "n": draws.seeds,
            "images": draws.images, "interval": draws.kind,
            "excludes_zero": low is not None and (low > 0 or high < 0)}
