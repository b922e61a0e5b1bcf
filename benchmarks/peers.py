"""Same-kind peer implementations of our ops, at the strength of our severity 3.

Each entry maps an op name to ``{peer label: fn(image) -> image}``. Peers are
albumentations (NumPy/OpenCV) and kornia (torch, CPU). An op with no same-kind op in a
library has no entry for it; a library that is not installed gives no peers (the
benchmark says so). Parameters are chosen to match ours at severity 3 so that timing
compares the same work: the same sigma, radius, quality, amount.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

PeerFn = Callable[[np.ndarray], np.ndarray]


def _albumentations() -> dict[str, dict[str, PeerFn]]:
    import albumentations as A

    def run(t) -> PeerFn:
        t.p = 1.0
        return lambda image: t(image=image)["image"]

    return {
        # sigma 3; kernel size picked by albumentations from sigma (0 = derive)
        "gaussian_blur": {"albumentations": run(A.GaussianBlur(blur_limit=0, sigma_limit=(3.0, 3.0)))},
        "defocus_blur": {"albumentations": run(A.Defocus(radius=(6, 6), alias_blur=(0.5, 0.5)))},
        "motion_blur": {"albumentations": run(A.MotionBlur(blur_limit=(31, 31)))},
        "glass_blur": {"albumentations": run(A.GlassBlur(sigma=1.0, max_delta=2, iterations=3))},
        "zoom_blur": {"albumentations": run(A.ZoomBlur(max_factor=(1.2, 1.2), step_factor=(0.02, 0.02)))},
        "gaussian_noise": {"albumentations": run(A.GaussNoise(std_range=(0.18, 0.18)))},
        "shot_noise": {"albumentations": run(A.ShotNoise(scale_range=(1 / 12, 1 / 12)))},
        "impulse_noise": {"albumentations": run(A.SaltAndPepper(amount=(0.09, 0.09)))},
        "contrast": {"albumentations": run(A.RandomBrightnessContrast(brightness_limit=(0, 0),
                                                                       contrast_limit=(-0.8, -0.8)))},
        "brightness": {"albumentations": run(A.RandomBrightnessContrast(brightness_limit=(0.3, 0.3),
                                                                         contrast_limit=(0, 0)))},
        "pixelate": {"albumentations": run(A.Downscale(scale_range=(0.4, 0.4)))},
        "jpeg_compression": {"albumentations": run(A.ImageCompression(quality_range=(15, 15)))},
        "elastic_transform": {"albumentations": run(A.ElasticTransform(alpha=21.25 * 5.12, sigma=5.12))},
    }


def _kornia() -> dict[str, dict[str, PeerFn]]:
    import kornia
    import torch

    def tensor_op(fn) -> PeerFn:
        def run(image: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255.0)
                y = fn(x)
                return y[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()
        return run

    def pixelate(x):
        h, w = x.shape[-2:]
        small = torch.nn.functional.interpolate(x, size=(round(h * 0.4), round(w * 0.4)), mode="area")
        return torch.nn.functional.interpolate(small, size=(h, w), mode="nearest")

    return {
        "gaussian_blur": {"kornia": tensor_op(lambda x: kornia.filters.gaussian_blur2d(
            x, (19, 19), (3.0, 3.0), border_type="replicate"))},
        "motion_blur": {"kornia": tensor_op(lambda x: kornia.filters.motion_blur(x, 31, 45.0, 0.0))},
        "contrast": {"kornia": tensor_op(lambda x: kornia.enhance.adjust_contrast_with_mean_subtraction(x, 0.2))},
        "brightness": {"kornia": tensor_op(lambda x: kornia.enhance.adjust_brightness(x, 0.3))},
        "saturate": {"kornia": tensor_op(lambda x: kornia.enhance.adjust_saturation(x, 2.0))},
        "pixelate": {"kornia": tensor_op(pixelate)},
        "gaussian_noise": {"kornia": tensor_op(lambda x: x + 0.18 * torch.randn_like(x))},
    }


def load_peers() -> tuple[dict[str, dict[str, PeerFn]], dict[str, str]]:
    """(op -> peer label -> fn, library -> why it is missing)."""
    peers: dict[str, dict[str, PeerFn]] = {}
    missing: dict[str, str] = {}
    for library, build in (("albumentations", _albumentations), ("kornia", _kornia)):
        try:
            table = build()
        except ImportError as exc:  # recorded in the results, not hidden
            missing[library] = f"not installed ({exc}); pip install -e '.[bench]'"
            continue
        for op, fns in table.items():
            peers.setdefault(op, {}).update(fns)
    return peers, missing
