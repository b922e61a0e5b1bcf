"""Feature-distribution metrics: is the corrected feature set on the clean manifold?

All metrics take token-feature sets as tensors [n, d] (rows are samples) and run on the
tensors' device (GPU when the features are there), in float64 by default. Build the sets
from [images, patches, dim] features with :func:`token_set`.

- ``paired_mse``      mean squared error of paired rows (the distillation distance)
- ``mmd2``            unbiased squared MMD; RBF kernel exp(-|x-y|^2 / h) with h the median
                      pairwise squared distance of the pooled set (median heuristic), or a
                      given bandwidth, or the cubic polynomial kernel
- ``kid``             KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over subsets
- ``energy_distance`` 2 E|X-Y| - E|X-X'| - E|Y-Y'| (V-statistics: exactly 0 for equal sets)
- ``linear_cka``      linear CKA of paired sets (1 for identical, invariant to rotations and
                      isotropic scaling)

The two-sample metrics (MMD^2, KID, energy distance) assume independent sets; for corrected
and clean features of the same images use maa_train.eval.split_metrics (one half against the other).

Memory: pairwise matrices are never held whole. Kernel and distance sums run over blocks of
rows (each block a few hundred MB of float64 at most), so the memory of MMD^2 and energy
distance grows with the number of rows, not its square; their time still grows with the
square. The median bandwidth is taken over at most `BANDWIDTH_ROWS` rows of the pooled set
(a fixed-seed sample when there are more), which estimates the median of billions of
pairwise distances closely at a bounded cost.
"""
from __future__ import annotations

from typing import Callable, Iterator, Literal

import torch

TokenMode = Literal["pooled", "sampled", "all"]
BANDWIDTH_ROWS = 8192
_BLOCK_ELEMENTS = 1 << 25  # one block of a pairwise matrix: 32M float64 values, 256 MB


def token_set(features: torch.Tensor, mode: TokenMode = "pooled", per_image: int = 16,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """[N, P, D] patch features -> [n, D] rows: mean over patches, a sample of patches, or all."""
    if features.dim() != 3:
        raise ValueError(f"expected features [images, patches, dim], got {tuple(features.shape)}")
    n, p, d = features.shape
    if mode == "pooled":
        return features.mean(dim=1)
    if mode == "all":
        return features.reshape(n * p, d)
    if mode == "sampled":
        k = min(per_image, p)
        idx = torch.stack([torch.randperm(p, generator=generator)[:k] for _ in range(n)]).to(features.device)
        return torch.gather(features, 1, idx[..., None].expand(n, k, d)).reshape(n * k, d)
    raise ValueError(f"token mode must be pooled, sampled or all, got {mode!r}")


def _check(x: torch.Tensor, y: torch.Tensor, name: str, min_rows: int, paired: bool = False,
           same_width: bool = True):
    if x.dim() != 2 or y.dim() != 2 or (same_width and x.shape[1] != y.shape[1]):
        raise ValueError(f"{name}: expected two [n, d] sets with equal d, got {tuple(x.shape)} and {tuple(y.shape)}")
    if paired and x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: paired sets need equal rows, got {x.shape[0]} and {y.shape[0]}")
    if min(x.shape[0], y.shape[0]) < min_rows:
        raise ValueError(f"{name}: needs at least {min_rows} rows per set, got {x.shape[0]} and {y.shape[0]}")


def _f64(*ts: torch.Tensor, dtype=torch.float64):
    return [t.to(dtype) for t in ts]


def paired_mse(x: torch.Tensor, y: torch.Tensor) -> float:
    _check(x, y, "paired_mse", 1, paired=True)
    x, y = _f64(x, y)
    return float((x - y).pow(2).mean())


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).pow(2)


def _blocks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, rows of ``a``) so that one block against all of ``b`` stays bounded."""
    step = max(1, _BLOCK_ELEMENTS // max(1, b.shape[0]))
    for start in range(0, a.shape[0], step):
        yield start, a[start:start + step]


def _pair_sum(a: torch.Tensor, b: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              diagonal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of fn(a, b) over all pairs, sum of its diagonal when ``diagonal``), block by block."""
    total = torch.zeros((), dtype=a.dtype, device=a.device)
    diag = torch.zeros((), dtype=a.dtype, device=a.device)
    for start, rows in _blocks(a, b):
        block = fn(rows, b)
        total = total + block.sum()
        if diagonal:
            diag = diag + block.diagonal(offset=start).sum()
    return total, diag


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    z = torch.cat(_f64(x, y))
    if len(z) > BANDWIDTH_ROWS:
        pick = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))[:BANDWIDTH_ROWS]
        z = z[pick.to(z.device)]
    d = _sqdist(z, z)
    off = d[~torch.eye(len(z), dtype=torch.bool, device=z.device)]
    h = float(off.median())
    return h if h > 0 else 1.0


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor, k) -> float:
    n, m = x.shape[0], y.shape[0]
    kxx, kxx_diag = _pair_sum(x, x, k, diagonal=True)
    kyy, kyy_diag = _pair_sum(y, y, k, diagonal=True)
    kxy, _ = _pair_sum(x, y, k)
    return float((kxx - kxx_diag) / (n * (n - 1)) + (kyy - kyy_diag) / (m * (m - 1)) - 2 * kxy / (n * m))


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Literal["rbf", "poly"] = "rbf",
         bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 (can be slightly negative when the sets match)."""
    _check(x, y, "mmd2", 2)
    x, y = _f64(x, y)
    if kernel == "rbf":
        h = bandwidth or median_bandwidth(x, y)
        k = lambda a, b: torch.exp(-_sqdist(a, b) / h)  # noqa: E731
    elif kernel == "poly":
        d = x.shape[1]
        k = lambda a, b: (a @ b.T / d + 1.0).pow(3)  # noqa: E731
    else:
        raise ValueError(f"kernel must be rbf or poly, got {kernel!r}")
    return _unbiased_mmd2(x, y, k)


def kid(x: torch.Tensor, y: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Kernel Inception Distance on these features: (mean, std) over random subsets."""
    _check(x, y, "kid", 2)
    s = min(subset_size, x.shape[0], y.shape[0])
    vals = []
    for _ in range(subsets):
        ix = torch.randperm(x.shape[0], generator=generator)[:s].to(x.device)
        iy = torch.randperm(y.shape[0], generator=generator)[:s].to(y.device)
        vals.append(mmd2(x[ix], y[iy], kernel="poly"))
    t = torch.tensor(vals, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(vals) > 1 else 0.0


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    _check(x, y, "energy_distance", 1)
    x, y = _f64(x, y)
    n, m = x.shape[0], y.shape[0]
    dxy, _ = _pair_sum(x, y, torch.cdist)
    dxx, _ = _pair_sum(x, x, torch.cdist)
    dyy, _ = _pair_sum(y, y, torch.cdist)
    return float(2 * dxy / (n * m) - dxx / (n * n) - dyy / (m * m))


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    _check(x, y, "linear_cka", 2, paired=True, same_width=False)  # CKA compares spaces of any widths
    x, y = _f64(x, y)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    num = (y.T @ x).pow(2).sum()
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if den == 0:
        raise ValueError("linear_cka: a feature set is constant (zero variance)")
    return float(num / den)
