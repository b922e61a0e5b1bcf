"""Blur kernels of the Real-ESRGAN degradation family, as pure functions of their parameters.

Every kernel is a square float32 array of odd side, normalised to sum 1. A kernel is
described by a small JSON-serialisable spec (``{"type": ..., "size": ..., ...}``) so a
sampled blur is recorded by its parameters, never as an array, and rebuilt exactly.

Conventions: ``x`` runs along columns and ``y`` along rows; ``theta`` (radians) is the
counter-clockwise angle, seen with rows pointing up, of the axis that carries
``sigma_x``. All Gaussian-family kernels are point-symmetric, so OpenCV's correlation
(``filter2D``) equals convolution with them.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
from scipy.special import j1

KernelSpec = dict[str, Any]

KERNEL_TYPES: tuple[str, ...] = (
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc",
)

# The published Real-ESRGAN choice among the Gaussian-family kernels (sinc is drawn separately).
REALESRGAN_KERNEL_PROBS: dict[str, float] = {
    "iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
    "plateau_iso": 0.12, "plateau_aniso": 0.03,
}


def _check_size(size: int) -> int:
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"kernel 'size' must be an odd integer >= 1, got {size!r}")
    return int(size)


def _check_positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"kernel '{name}' must be a positive finite number, got {value!r}")
    return float(value)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """d(x, y) = [x y] Sigma^-1 [x y]^T with Sigma = R diag(sx^2, sy^2) R^T on the kernel grid."""
    half = size // 2
    ax = np.arange(-half, half + 1, dtype=np.float64)
    x = ax[None, :]
    y = -ax[:, None]  # rows grow downward; flip so theta is counter-clockwise as displayed
    c, s = math.cos(theta), math.sin(theta)
    u = c * x + s * y   # coordinate along the sigma_x axis
    v = -s * x + c * y  # coordinate along the sigma_y axis
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalise(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def _distance2(size: int, sigma_x: float, sigma_y: float | None, theta: float) -> np.ndarray:
    """Checked arguments -> the squared Mahalanobis distance grid the kernel shapes share."""
    size = _check_size(size)
    sx = _check_positive("sigma_x", sigma_x)
    sy = sx if sigma_y is None else _check_positive("sigma_y", sigma_y)
    return _quadratic_form(size, sx, sy, float(theta))


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
    """Isotropic (``sigma_y`` None) or anisotropic Gaussian."""
    return _normalise(np.exp(-0.5 * _distance2(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                                theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """exp(-0.5 d^beta): beta < 1 gives heavier tails, beta > 1 a flatter top than a Gaussian."""
    return _normalise(np.exp(-0.5 * _distance2(size, sigma_x, sigma_y, theta) ** _check_positive("beta", beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                   theta: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """1 / (1 + d^beta): a flat top with polynomial tails."""
    return _normalise(1.0 / (1.0 + _distance2(size, sigma_x, sigma_y, theta) ** _check_positive("beta", beta)))


def sinc_kernel(size: int, omega_c: float) -> np.ndarray:
    """Ideal circular low-pass with cutoff ``omega_c`` (radians/pixel, at most pi), truncated."""
    size = _check_size(size)
    w = _check_positive("omega_c", omega_c)
    if w > math.pi + 1e-9:
        raise ValueError(f"kernel 'omega_c' must be in (0, pi], got {omega_c!r}")
    half = size // 2
    ax = np.arange(-half, half + 1, dtype=np.float64)
    r = np.hypot(ax[None, :], ax[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        k = w * j1(w * r) / (2.0 * math.pi * r)
    k[half, half] = w * w / (4.0 * math.pi)  # the limit of the expression at r = 0
    return _normalise(k)


def make_kernel(spec: Mapping[str, Any]) -> np.ndarray:
    """Build the kernel a spec describes; errors name the missing or bad field."""
    kind = spec.get("type")
    if kind not in KERNEL_TYPES:
        raise ValueError(f"kernel 'type' must be one of {', '.join(KERNEL_TYPES)}, got {kind!r}")
    try:
        size = spec["size"]
        if kind == "sinc":
            return sinc_kernel(size, spec["omega_c"])
        sx = spec["sigma_x"]
        sy = spec["sigma_y"] if kind.endswith("aniso") else None
        theta = spec["theta"] if kind.endswith("aniso") else 0.0
        if kind in ("iso", "aniso"):
            return gaussian_kernel(size, sx, sy, theta)
        builder = generalized_gaussian_kernel if kind.startswith("generalized") else plateau_kernel
        return builder(size, sx, sy, theta, spec["beta"])
    except KeyError as err:
        raise ValueError(f"kernel of type '{kind}' needs field {err.args[0]!r}") from None


# Outer rings of a kernel holding less than this share of its mass are dropped before
# filtering: far below 8-bit resolution, and a narrow kernel in a 21 px window then costs
# a small direct convolution instead of a DFT.
TRIM_MASS = 1e-7


def trim_kernel(kernel: np.ndarray, mass: float = TRIM_MASS) -> np.ndarray:
    """The central odd square of ``kernel`` whose dropped rings hold at most ``mass``."""
    size = kernel.shape[0]
    total = float(np.abs(kernel).sum())
    # inner[r] = absolute mass of the central square of radius r
    half = size // 2
    inner = [float(np.abs(kernel[half - r:half + r + 1, half - r:half + r + 1]).sum()) for r in range(half + 1)]
    for r in range(half + 1):
        if total - inner[r] <= mass * total:
            return kernel[half - r:half + r + 1, half - r:half + r + 1]
    return kernel


# A kernel is applied as a sum of separable (column x row) passes when that sum is within
# SEPARABLE_TOL (L1 norm of the residual kernel: a bound on the output error as a share of
# full scale, 0.03 of an 8-bit level) using at most MAX_SEPARABLE_TERMS passes. Rotated
# thin Gaussians need more and take the 2-D filter; isotropic and circular kernels (most
# draws, and every sinc of low cutoff) take a few 1-D passes, several times cheaper.
SEPARABLE_TOL = 1e-4
MAX_SEPARABLE_TERMS = 6
DIRECT_MAX_SIZE = 9  # up to this side OpenCV's direct 2-D filter is already cheap


def separable_terms(kernel: np.ndarray, tol: float = SEPARABLE_TOL,
                    max_terms: int = MAX_SEPARABLE_TERMS) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """[(column, row), ...] whose summed outer products equal ``kernel`` within ``tol``
    (L1), from its singular value decomposition; None when more than ``max_terms`` needed."""
    k = kernel.astype(np.float64)
    u, s, vt = np.linalg.svd(k)
    for rank in range(1, min(max_terms, s.size) + 1):
        approx = (u[:, :rank] * s[:rank]) @ vt[:rank]
        if float(np.abs(k - approx).sum()) <= tol:
            return [((u[:, i] * math.sqrt(s[i])).astype(np.float32),
                     (vt[i] * math.sqrt(s[i])).astype(np.float32)) for i in range(rank)]
    return None


def apply_kernel(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter an image (uint8 or float32) with reflected borders; sizes down to 1x1."""
    kernel = trim_kernel(kernel)
    terms = separable_terms(kernel, max_terms=1 if kernel.shape[0] <= DIRECT_MAX_SIZE else MAX_SEPARABLE_TERMS)
    if terms is None:
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if len(terms) == 1:
        column, row = terms[0]
        return cv2.sepFilter2D(image, -1, row, column, borderType=cv2.BORDER_REFLECT_101)
    total = None
    for column, row in terms:
        part = cv2.sepFilter2D(image, cv2.CV_32F, row, column, borderType=cv2.BORDER_REFLECT_101)
        total = part if total is None else cv2.add(total, part)
    if image.dtype == np.uint8:
        return np.clip(np.rint(total), 0, 255).astype(np.uint8)
    return total.astype(image.dtype, copy=False)


def odd_sizes(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(range(lo | 1, hi + 1, 2))


def sample_kernel(rng: np.random.Generator, *, sizes: Sequence[int] = odd_sizes(7, 21),
                  sigma: tuple[float, float] = (0.2, 3.0),
                  beta_generalized: tuple[float, float] = (0.5, 4.0),
                  beta_plateau: tuple[float, float] = (1.0, 2.0),
                  probs: Mapping[str, float] = REALESRGAN_KERNEL_PROBS,
                  sinc_prob: float = 0.1) -> KernelSpec:
    """Draw one kernel spec. The number of draws does not depend on the ranges, so the
    same generator state gives a kernel that grows monotonically with ``sigma``."""
    size = int(sizes[int(rng.integers(len(sizes)))])
    use_sinc = rng.random() < sinc_prob
    names = tuple(probs)
    weights = np.asarray([probs[n] for n in names], dtype=np.float64)
    kind = names[_pick(weights, rng.random())]
    u_x, u_y, u_theta, u_beta, u_omega = rng.random(5)
    if use_sinc:
        lo = math.pi / 3 if size < 13 else math.pi / 5
        return {"type": "sinc", "size": size, "omega_c": float(lo + (math.pi - lo) * u_omega)}
    spec: KernelSpec = {"type": kind, "size": size,
                        "sigma_x": float(sigma[0] + (sigma[1] - sigma[0]) * u_x)}
    if kind.endswith("aniso"):
        spec["sigma_y"] = float(sigma[0] + (sigma[1] - sigma[0]) * u_y)
        spec["theta"] = float(-math.pi + 2 * math.pi * u_theta)
    if kind.startswith("generalized"):
        spec["beta"] = _sample_beta(beta_generalized, u_beta)
    elif kind.startswith("plateau"):
        spec["beta"] = _sample_beta(beta_plateau, u_beta)
    return spec


def _pick(weights: np.ndarray, u: float) -> int:
    """Index chosen by one uniform draw ``u`` against (unnormalised) ``weights``."""
    total = float(weights.sum())
    if total <= 0:
        raise ValueError("kernel probabilities must not all be zero")
    return min(int(np.searchsorted(np.cumsum(weights) / total, u, side="right")), len(weights) - 1)


def _sample_beta(bounds: tuple[float, float], u: float) -> float:
    """Half the mass below 1 and half above, as the published sampler does, so shapes with
    heavier and lighter tails than a Gaussian are equally likely."""
    lo, hi = bounds
    if lo < 1.0 < hi:
        return float(lo + (1.0 - lo) * 2 * u) if u < 0.5 else float(1.0 + (hi - 1.0) * (2 * u - 1))
    return float(lo + (hi - lo) * u)


def sample_sinc(rng: np.random.Generator, *, sizes: Sequence[int] = odd_sizes(7, 21),
                omega: tuple[float, float] = (math.pi / 3, math.pi)) -> KernelSpec:
    size = int(sizes[int(rng.integers(len(sizes)))])
    return {"type": "sinc", "size": size, "omega_c": float(rng.uniform(*omega))}
