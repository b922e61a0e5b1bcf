"""The Real-ESRGAN second-order degradation chain as one op, replayable from its params.

Two stages, each: blur (a sampled kernel) -> random resize (up / down / keep) -> noise
(Gaussian or Poisson, colour or grey) -> JPEG. The second stage's JPEG and a final sinc
filter (with its own probability) come in a random order, and the result is resized back
to the input size. The sampler draws every choice into a nested, JSON-serialisable
params dict (kernels by their parameters), so the op itself draws only noise from
``seed``. Level 3 uses the published ranges; other levels scale blur, resize, noise and
JPEG ranges down or up.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from corruptor.ops.compression import jpeg_roundtrip
from corruptor.ops.kernels import apply_kernel, make_kernel, odd_sizes, sample_kernel, sample_sinc
from corruptor.ops.normal import standard_normal
from corruptor.ops.registry import Params, register
from corruptor.ops.resolution import resize
from maa_format.rng import child_seed

RESIZE_METHODS: tuple[str, ...] = ("area", "bilinear", "bicubic")
RESIZE_MODES: tuple[str, ...] = ("up", "down", "keep")

# Level 1 is narrowed (less blur, no deep downscale) so that 1-px text survives it
# (tests/corruptor/ops/test_severity.py).
# Per level and stage: sigma (blur), scale (resize bounds), noise (Gaussian sigma on the
# 0..255 scale), poisson (Poisson scale), jpeg (quality bounds). Probabilities that the
# published chain fixes are the same at every level.
REALESRGAN: tuple[dict, ...] = (
    {"stages": (
        {"sigma": (0.2, 0.6), "scale": (0.85, 1.2), "noise": (1, 8), "poisson": (0.05, 0.8), "jpeg": (75, 95)},
        {"sigma": (0.2, 0.5), "scale": (0.85, 1.1), "noise": (1, 6), "poisson": (0.05, 0.6), "jpeg": (75, 95)},
    )},
    {"stages": (
        {"sigma": (0.2, 2.0), "scale": (0.35, 1.4), "noise": (1, 18), "poisson": (0.05, 1.8), "jpeg": (50, 95)},
        {"sigma": (0.2, 1.0), "scale": (0.5, 1.15), "noise": (1, 15), "poisson": (0.05, 1.5), "jpeg": (50, 95)},
    )},
    {"stages": (  # the published ranges
        {"sigma": (0.2, 3.0), "scale": (0.15, 1.5), "noise": (1, 30), "poisson": (0.05, 3.0), "jpeg": (30, 95)},
        {"sigma": (0.2, 1.5), "scale": (0.3, 1.2), "noise": (1, 25), "poisson": (0.05, 2.5), "jpeg": (30, 95)},
    )},
    {"stages": (
        {"sigma": (0.2, 4.0), "scale": (0.12, 1.3), "noise": (1, 40), "poisson": (0.05, 4.0), "jpeg": (20, 85)},
        {"sigma": (0.2, 2.2), "scale": (0.25, 1.1), "noise": (1, 35), "poisson": (0.05, 3.5), "jpeg": (20, 85)},
    )},
    {"stages": (
        {"sigma": (0.2, 5.0), "scale": (0.1, 1.2), "noise": (1, 50), "poisson": (0.05, 5.0), "jpeg": (10, 75)},
        {"sigma": (0.2, 3.0), "scale": (0.2, 1.0), "noise": (1, 45), "poisson": (0.05, 4.5), "jpeg": (10, 75)},
    )},
)

# Probabilities of the published chain, per stage.
RESIZE_PROBS = ((0.2, 0.7, 0.1), (0.3, 0.4, 0.3))  # up, down, keep
GAUSSIAN_NOISE_PROB = (0.5, 0.5)
GRAY_NOISE_PROB = (0.4, 0.4)
BLUR_PROB = (1.0, 0.8)
SINC_PROB = (0.1, 0.1)
FINAL_SINC_PROB = 0.8
BETA_GENERALIZED = (0.5, 4.0)
BETA_PLATEAU = (1.0, 2.0)
KERNEL_SIZES = odd_sizes(7, 21)


def _choice(options: tuple[str, ...], probs: tuple[float, ...], u: float) -> str:
    edges = np.cumsum(probs) / sum(probs)
    return options[min(int(np.searchsorted(edges, u, side="right")), len(options) - 1)]


def _sample_stage(rng: np.random.Generator, index: int, row: dict) -> dict[str, Any]:
    u_blur, u_mode, u_scale, u_method, u_kind, u_amount, u_gray, u_jpeg = rng.random(8)
    kernel = sample_kernel(rng, sizes=KERNEL_SIZES, sigma=row["sigma"], beta_generalized=BETA_GENERALIZED,
                           beta_plateau=BETA_PLATEAU, sinc_prob=SINC_PROB[index])
    mode = _choice(RESIZE_MODES, RESIZE_PROBS[index], u_mode)
    lo, hi = row["scale"]
    if mode == "up":
        scale = 1.0 + (hi - 1.0) * u_scale
    elif mode == "down":
        scale = 1.0 - (1.0 - lo) * u_scale  # larger u shrinks more at every level
    else:
        scale = 1.0
    if u_kind < GAUSSIAN_NOISE_PROB[index]:
        noise = {"type": "gaussian", "sigma": float(row["noise"][0] + (row["noise"][1] - row["noise"][0]) * u_amount)}
    else:
        p_lo, p_hi = row["poisson"]
        noise = {"type": "poisson", "scale": float(p_lo + (p_hi - p_lo) * u_amount)}
    noise["gray"] = bool(u_gray < GRAY_NOISE_PROB[index])
    q_lo, q_hi = row["jpeg"]
    return {
        "blur": kernel if u_blur < BLUR_PROB[index] else None,
        "resize": {"mode": mode, "scale": float(scale),
                   "method": RESIZE_METHODS[min(int(u_method * 3), 2)]},
        "noise": noise,
        "jpeg": int(round(q_hi - (q_hi - q_lo) * u_jpeg)),
    }


def _sample(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    row = REALESRGAN[level - 1]
    stages = [_sample_stage(rng, i, row["stages"][i]) for i in range(2)]
    u_sinc, u_order, u_method = rng.random(3)
    sinc = sample_sinc(rng, sizes=KERNEL_SIZES)
    return {
        "stages": stages,
        "final": {"sinc": sinc if u_sinc < FINAL_SINC_PROB else None,
                  "order": "sinc_first" if u_order < 0.5 else "jpeg_first",
                  "method": RESIZE_METHODS[min(int(u_method * 3), 2)]},
        "seed": child_seed(rng),
    }


def _add_noise(image: np.ndarray, noise: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Noise on a float image in [0, 1]; grey noise is one field shared by the channels."""
    h, w = image.shape[:2]
    gray = bool(noise.get("gray", False))
    if noise["type"] == "gaussian":
        field = standard_normal(rng, (h, w, 1) if gray else (h, w, 3))
        return image + field * np.float32(float(noise["sigma"]) / 255.0)
    if noise["type"] != "poisson":
        raise ValueError(f"realesrgan noise 'type' must be gaussian or poisson, got {noise['type']!r}")
    signal = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None] if gray else image
    return image + _poisson_noise(np.clip(signal, 0.0, 1.0), rng) * np.float32(noise["scale"])


def _poisson_noise(signal: np.ndarray, rng: np.random.Generator, levels: float = 255.0) -> np.ndarray:
    """Shot noise of photon counts ``signal * levels``, back on the [0, 1] scale. Counts of
    16 and more use the normal limit (the same mean and variance), far cheaper to draw;
    darker pixels draw exact Poisson counts."""
    std = cv2.sqrt(signal * np.float32(1.0 / levels)).reshape(signal.shape)  # cv2 drops a unit axis
    noise = std * standard_normal(rng, signal.shape)
    flat_signal, flat_noise = signal.reshape(-1), noise.reshape(-1)
    dark = np.flatnonzero(flat_signal < np.float32(16.0 / levels))
    if dark.size:
        lam = flat_signal[dark].astype(np.float64) * levels
        flat_noise[dark] = ((rng.poisson(lam) - lam) * (1.0 / levels)).astype(np.float32)
    return noise


def _to_uint8(image: np.ndarray) -> np.ndarray:
    # Clip first: convertScaleAbs takes absolute values, and noise or sinc lobes go below 0.
    return cv2.convertScaleAbs(np.clip(image, 0.0, 1.0), alpha=255.0)


def _stage(image: np.ndarray, stage: dict[str, Any], target: tuple[int, int],
           rng: np.random.Generator, with_jpeg: bool) -> np.ndarray:
    if stage.get("blur") is not None:
        image = apply_kernel(image, make_kernel(stage["blur"]))
    image = resize(image, target, stage["resize"]["method"], "resize.method")
    image = _add_noise(image, stage["noise"], rng)
    if with_jpeg:
        image = jpeg_roundtrip(_to_uint8(image), stage["jpeg"]).astype(np.float32) * np.float32(1 / 255)
    return np.clip(image, 0.0, 1.0)


@register("realesrgan", family="realesrgan", severities=REALESRGAN, sampler=_sample)
def realesrgan(image: np.ndarray, params: Params) -> np.ndarray:
    """Real-ESRGAN second-order chain: two blur/resize/noise/JPEG stages and a final sinc."""
    h, w = image.shape[:2]
    seed = int(params["seed"])
    first, second = params["stages"]
    final = params["final"]
    x = image.astype(np.float32) * np.float32(1 / 255)
    s1 = float(first["resize"]["scale"])
    x = _stage(x, first, (round(h * s1), round(w * s1)), np.random.default_rng([seed, 1]), True)
    # The second resize is relative to the input size, as the published chain sizes it
    # against its output resolution.
    s2 = float(second["resize"]["scale"])
    x = _stage(x, second, (round(h * s2), round(w * s2)), np.random.default_rng([seed, 2]), False)

    def back_and_sinc(z: np.ndarray) -> np.ndarray:
        z = resize(z, (h, w), final["method"], "final.method")
        return apply_kernel(z, make_kernel(final["sinc"])) if final.get("sinc") is not None else z

    quality = int(second["jpeg"])
    if final["order"] == "sinc_first":
        return jpeg_roundtrip(_to_uint8(back_and_sinc(x)), quality)
    if final["order"] != "jpeg_first":
        raise ValueError(f"realesrgan 'final.order' must be sinc_first or jpeg_first, got {final['order']!r}")
    return _to_uint8(back_and_sinc(jpeg_roundtrip(_to_uint8(x), quality).astype(np.float32) * np.float32(1 / 255)))


# ------------------------------------------------------------------ one kernel

# sigma: the kernel width range; sizes and type probabilities are those of the chain.
REALESRGAN_BLUR: tuple[dict, ...] = (
    {"sigma": (0.2, 1.0)},
    {"sigma": (0.5, 1.8)},
    {"sigma": (0.8, 3.0)},
    {"sigma": (1.2, 4.0)},
    {"sigma": (1.8, 5.0)},
)


def _sample_blur(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
    return {"kernel": sample_kernel(rng, sizes=KERNEL_SIZES, sigma=REALESRGAN_BLUR[level - 1]["sigma"],
                                    beta_generalized=BETA_GENERALIZED, beta_plateau=BETA_PLATEAU,
                                    sinc_prob=SINC_PROB[0])}


@register("realesrgan_blur", family="realesrgan", severities=REALESRGAN_BLUR, sampler=_sample_blur)
def realesrgan_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """One Real-ESRGAN blur kernel (Gaussian, generalised, plateau, iso/aniso, or sinc)."""
    return apply_kernel(image, make_kernel(params["kernel"]))
