"""Mechanism metrics on paired data: one half's corrected features against the OTHER half's clean ones.

The unbiased MMD^2, KID and energy distance assume two independent samples. The mechanism
table has, for every image, a corrupted or corrected feature set and the clean one of the
same image; comparing those two sets directly shares the images between the samples, which
biases the statistics (MMD^2 reads below zero when corrected features track their clean
targets). So the images of a group are split once into halves A and B (a fixed-seed
permutation of the images sorted by key): a model row compares its features of A with the
clean features of B, and the clean reference row compares the clean features of A with the
same clean features of B. Both rows share B, so a model row minus the reference is what the
corruption (and its correction) did, and the reference is ~0 for every sample size.

Estimators treat images as the units. With S_ij the mean kernel value between the token rows
of image i and those of image j, and weights w (1 for the fixed split, bootstrap counts
otherwise):

    within(S, w)      = sum_{i != j} w_i w_j S_ij / ((sum w)^2 - sum w^2)
    between(S, u, v)  = sum_ij u_i v_j S_ij / (sum u sum v)

    MMD^2  = within(Kxx_A) + within(Kyy_B) - 2 between(Kxy_AB)    RBF, bandwidth: median pairwise
             squared distance of the rows of X_A and Y_B (the fixed split's, kept for the bootstrap)
    KID    = the same with the cubic kernel (x.y / d + 1)^3 over all rows (no subsets)
    energy = 2 between(D_AB) - within(D_A) - within(D_B), Euclidean distances (U-statistic:
             0 in expectation for one distribution)

With one row per image and unit weights this is the usual unbiased (U-statistic) MMD^2;
with several rows per image, pairs of rows of the same image are left out, as they are not
independent draws; bootstrap copies of one image are never paired with each other.

Intervals: each bootstrap replicate draws a new split (a new permutation) and resamples the
images of each half with replacement; percentile intervals at ``level``. The paired metrics
keep the same images on both sides, over all images of the group: paired MSE (a mean over
images) gets a percentile bootstrap interval; linear CKA a grouped-jackknife one (images
left out group by group, normal interval), because resampling with replacement inflates CKA
(duplicated points align; at 400 images every replicate read above the estimate).
Everything runs in float64 on the features' device.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from maa_train.eval import metrics
from maa_train.eval.bootstrap import percentile_interval

MIN_HALF_IMAGES = 2           # within() needs two distinct images per half
GRAM_ROWS = 2048              # CKA intervals need [rows, rows] Gram matrices; above this: no CKA interval
JACKKNIFE_GROUPS = 50
_BLOCK_ELEMENTS = 1 << 24     # kernel values per block while reducing rows to image means


@dataclass(frozen=True)
class SplitSettings:
    seed: int = 0
    reps: int = 200           # bootstrap replicates; 0: point estimates only
    level: float = 0.95


# -- kernels reduced to image means -------------------------------------------------------------
def _rbf(h: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / h)


def _poly(d: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda a, b: (a @ b.T / d + 1.0).pow(3)


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def image_means(x: torch.Tensor, y: torch.Tensor, kernel) -> torch.Tensor:
    """[N, r, D] and [M, r', D] -> [N, M]: the mean kernel value between the rows of image i
    of x and the rows of image j of y, computed block by block."""
    n, r, d = x.shape
    m, r2, _ = y.shape
    yr = y.reshape(m * r2, d)
    step = max(1, _BLOCK_ELEMENTS // max(1, m * r2 * r))
    out = torch.empty(n, m, dtype=torch.float64, device=x.device)
    for start in range(0, n, step):
        block = x[start:start + step]
        k = kernel(block.reshape(-1, d), yr)
        out[start:start + step] = k.view(len(block), r, m, r2).mean(dim=(1, 3))
    return out


# -- weighted U- and V-type sums, batched over replicates -----------------------------------------
def _within(s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """w: [N, R] weights per replicate (zero outside the half) -> [R]."""
    total = (w * (s @ w)).sum(0) - (w.pow(2) * s.diagonal()[:, None]).sum(0)
    return total / (w.sum(0).pow(2) - w.pow(2).sum(0))


def _between(s: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * (s @ v)).sum(0) / (u.sum(0) * v.sum(0))


def _two_sample(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor
                ) -> torch.Tensor:
    return _within(kxx, wa) + _within(kyy, wb) - 2 * _between(kxy, wa, wb)


def _weighted_cka(k: torch.Tensor, l: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Linear CKA with row weights w [n, R] from the Gram matrices K = X X^T, L = Y Y^T:
    HSIC_w(K, L) = w^T (K o L) w - 2 (w o m_K)^T L w + mu_K w^T L w, with m_K = K w / sum w and
    mu_K = w^T K w / (sum w)^2 (weighted centring); unit weights give the usual linear CKA."""
    sw = w.sum(0)

    def hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        aw, bw = a @ w, b @ w
        mu = (w * aw).sum(0) / sw.pow(2)
        return (w * ((a * b) @ w)).sum(0) - 2 * (w * aw / sw * bw).sum(0) + mu * (w * bw).sum(0)

    return hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l))


# -- splits and replicate weights -------------------------------------------------------------------
def halves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    half = n // 2
    return perm[:half], perm[half:2 * half]


def _group_rng(seed: int, order: list[str]) -> np.random.Generator:
    # The split depends on the group's images (their sorted keys) and the seed, not on read order.
    return np.random.default_rng([seed, zlib.crc32("\n".join(order).encode())])


def split_weights(keys: list[str], reps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half weights [n, 1 + reps] over the images (in the given order): column 0 is the fixed
    split (A = first half of a seeded permutation of the images sorted by key, weights 1);
    each further column a new split with images resampled with replacement inside each half."""
    n = len(keys)
    order = sorted(range(n), key=lambda i: keys[i])
    rng = _group_rng(seed, [keys[i] for i in order])
    wa = np.zeros((n, 1 + reps))
    wb = np.zeros((n, 1 + reps))
    for col in range(1 + reps):
        a, b = halves(n, rng)
        a, b = np.asarray(order)[a], np.asarray(order)[b]
        if col == 0:
            wa[a, 0] = 1.0
            wb[b, 0] = 1.0
        else:
            np.add.at(wa[:, col], a[rng.integers(0, len(a), len(a))], 1.0)
            np.add.at(wb[:, col], b[rng.integers(0, len(b), len(b))], 1.0)
    return torch.from_numpy(wa), torch.from_numpy(wb)


def resample_weights(n: int, reps: int, seed: int) -> torch.Tensor:
    """[n, 1 + reps]: unit weights, then bootstrap counts over all n images (paired metrics)."""
    rng = np.random.default_rng([seed, 1])
    w = np.ones((n, 1 + reps))
    for col in range(1, 1 + reps):
        w[:, col] = np.bincount(rng.integers(0, n, n), minlength=n)
    return torch.from_numpy(w)


def jackknife_weights(n: int, groups: int, seed: int) -> torch.Tensor:
    """[n, 1 + g]: unit weights, then one column per group of images left out (g = min(n, groups))."""
    g = min(n, groups)
    w = np.ones((n, 1 + g))
    if g:
        member = np.random.default_rng([seed, 2]).permutation(n) % g
        w[np.arange(n), 1 + member] = 0.0
    return torch.from_numpy(w)


def _jackknife_summary(values: torch.Tensor, level: float) -> tuple[float, list | None]:
    vals = values.detach().cpu().numpy()
    point, loo = float(vals[0]), vals[1:]
    if len(loo) < 2 or not np.isfinite(loo).all():
        return point, None
    from statistics import NormalDist

    g = len(loo)
    se = float(np.sqrt((g - 1) / g * np.square(loo - loo.mean()).sum()))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return point, [point - z * se, point + z * se]


def _summary(values: torch.Tensor, level: float) -> tuple[float, list | None]:
    vals = values.detach().cpu().numpy()
    lo, hi = percentile_interval(vals[1:], level) if len(vals) > 1 else (None, None)
    return float(vals[0]), None if lo is None else [lo, hi]


# -- one group of images ----------------------------------------------------------------------------
@dataclass
class _RowKernels:
    rbf_xx: torch.Tensor
    rbf_yy: torch.Tensor
    rbf_xy: torch.Tensor
    poly_xx: torch.Tensor
    poly_xy: torch.Tensor
    dist_xx: torch.Tensor
    dist_xy: torch.Tensor
    bandwidth: float


def _row_kernels(x: torch.Tensor, y: torch.Tensor, wa0: torch.Tensor, wb0: torch.Tensor) -> _RowKernels:
    a = wa0.bool().to(x.device)
    b = wb0.bool().to(x.device)
    h = metrics.median_bandwidth(x[a].flatten(0, 1), y[b].flatten(0, 1))
    rbf, poly = _rbf(h), _poly(x.shape[-1])
    return _RowKernels(image_means(x, x, rbf), image_means(y, y, rbf), image_means(x, y, rbf),
                       image_means(x, x, poly), image_means(x, y, poly),
                       image_means(x, x, _dist), image_means(x, y, _dist), h)


def group_rows(clean: torch.Tensor, rows: dict[str, torch.Tensor], sq_err: dict[str, torch.Tensor],
               keys: list[str], reference: str, settings: SplitSettings = SplitSettings(),
               replicates: dict | None = None) -> dict[str, dict]:
    """The mechanism rows of one group of images.

    clean, rows[name]: [n, r, D] token rows per image; sq_err[name]: [n] paired squared error per
    image; keys: the images' keys (the split is drawn over them sorted). Returns {name: metrics}
    for every model and the clean reference row ``reference``. ``replicates`` (when given) gets
    {name: {metric: [value per replicate]}} of MMD^2, KID and energy; replicate b's split and
    resample depend only on the seed and the keys: the same for every row and every run."""
    n, r, d = clean.shape
    if n < 2 * MIN_HALF_IMAGES:
        raise ValueError(f"{n} images: the split needs at least {2 * MIN_HALF_IMAGES} "
                         f"({MIN_HALF_IMAGES} per half)")
    dev = clean.device
    clean = clean.to(torch.float64)
    wa, wb = (w.to(dev) for w in split_weights(keys, settings.reps, settings.seed))
    wp = resample_weights(n, settings.reps, settings.seed).to(dev)
    poly_cc = image_means(clean, clean, _poly(d))
    dist_cc = image_means(clean, clean, _dist)
    half_info = {"a": int(wa[:, 0].sum()), "b": int(wb[:, 0].sum())}
    out: dict[str, dict] = {}

    def unpaired(k: _RowKernels, poly_yy: torch.Tensor, dist_yy: torch.Tensor, row: str) -> dict:
        res = {}
        for name, values in (("mmd2", _two_sample(k.rbf_xx, k.rbf_yy, k.rbf_xy, wa, wb)),
                             ("kid", _two_sample(k.poly_xx, poly_yy, k.poly_xy, wa, wb)),
                             ("energy", -_two_sample(k.dist_xx, dist_yy, k.dist_xy, wa, wb))):
            res[name], res[f"{name}_ci"] = _summary(values, settings.level)
            if replicates is not None:
                replicates.setdefault(row, {})[name] = values[1:].detach().cpu().tolist()
        res["bandwidth"] = k.bandwidth
        return res

    gram_c = None
    if n * r <= GRAM_ROWS:
        cf = clean.flatten(0, 1)
        gram_c = cf @ cf.T
    wjack = jackknife_weights(n, JACKKNIFE_GROUPS if settings.reps else 0, settings.seed).to(dev)
    wrows = wjack.repeat_interleave(r, dim=0)
    for name, feats in rows.items():
        x = feats.to(torch.float64)
        kern = _row_kernels(x, clean, wa[:, 0], wb[:, 0])
        row = {"paired_mse": None, "paired_mse_ci": None}
        err = sq_err[name].to(dev, torch.float64)
        row["paired_mse"], row["paired_mse_ci"] = _summary((err[:, None] * wp).sum(0) / wp.sum(0), settings.level)
        row.update(unpaired(kern, poly_cc, dist_cc, name))
        if gram_c is not None:
            xf = x.flatten(0, 1)
            row["cka"], row["cka_ci"] = _jackknife_summary(_weighted_cka(xf @ xf.T, gram_c, wrows), settings.level)
        else:
            row["cka"], row["cka_ci"] = metrics.linear_cka(x.flatten(0, 1), clean.flatten(0, 1)), None
        row.update(rows=int(half_info["a"] * r), images=half_info)
        out[name] = row
    h = metrics.median_bandwidth(clean[wa[:, 0].bool()].flatten(0, 1), clean[wb[:, 0].bool()].flatten(0, 1))
    rbf_cc = image_means(clean, clean, _rbf(h))
    ref = _RowKernels(rbf_cc, rbf_cc, rbf_cc, poly_cc, poly_cc, dist_cc, dist_cc, h)
    out[reference] = {"paired_mse": None, "paired_mse_ci": None, **unpaired(ref, poly_cc, dist_cc, reference),
                      "cka": None, "cka_ci": None, "rows": int(half_info["a"] * r), "images": half_info}
    return out
