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
"""
from __future__ import annotations

from typing import Literal

import torch

TokenMode = Literal["pooled", "sampled", "all"]


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


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    z = torch.cat(_f64(x, y))
    d = _sqdist(z, z)
    off = d[~torch.eye(len(z), dtype=torch.bool, device=z.device)]
    h = float(off.median())
    return h if h > 0 else 1.0


def _unbiased_mmd2(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor) -> float:
    n, m = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


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
    return _unbiased_mmd2(k(x, x), k(y, y), k(x, y))


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
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


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


def mechanism_row(corrected: torch.Tensor, clean: torch.Tensor, mode: TokenMode = "pooled",
                  per_image: int = 16, seed: int = 0) -> dict[str, float]:
    """The paper's mechanism metrics of a corrected [N, P, D] feature set against the clean one."""
    g = torch.Generator().manual_seed(seed)
    x = token_set(corrected, mode, per_image, g)
    g = torch.Generator().manual_seed(seed)
    y = token_set(clean, mode, per_image, g)
    kid_mean, kid_std = kid(x, y, subsets=20, subset_size=min(1000, len(x)), generator=torch.Generator().manual_seed(seed))
    return {"paired_mse": paired_mse(corrected.reshape(-1, corrected.shape[-1]), clean.reshape(-1, clean.shape[-1])),
            "mmd2": mmd2(x, y), "kid": kid_mean, "kid_std": kid_std, "energy": energy_distance(x, y),
            "cka": linear_cka(x, y), "rows": len(x), "tokens": mode}
