"""Stand-ins for brightness, gaussian_noise and contrast, registered only while the real
ops are missing, so the recipe tests do not depend on when the op modules land."""
from __future__ import annotations

import numpy as np

from corruptor.registry import OPS, load_all, register, table_sampler

SIMPLE = ("brightness", "gaussian_noise", "contrast")


def _brightness(image, params):
    return np.clip(image.astype(np.float32) + params["shift"] * 255, 0, 255).astype(np.uint8)


def _noise(image, params):
    noise = np.random.default_rng(params["seed"]).normal(0, params["sigma"] * 255, image.shape)
    return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)


def _contrast(image, params):
    mean = image.reshape(-1, 3).mean(axis=0)
    return np.clip(np.rint((image - mean) * params["factor"] + mean), 0, 255).astype(np.uint8)


_STANDINS = {
    "brightness": (_brightness, [{"shift": s} for s in (0.1, 0.2, 0.3, 0.4, 0.5)], False),
    "gaussian_noise": (_noise, [{"sigma": s} for s in (0.08, 0.12, 0.18, 0.26, 0.38)], True),
    "contrast": (_contrast, [{"factor": f} for f in (0.4, 0.3, 0.2, 0.1, 0.05)], False),
}


def ensure_simple_ops() -> list[str]:
    """Register stand-ins for the missing simple ops; returns the names to remove afterwards."""
    load_all()
    added = []
    for name in SIMPLE:
        if name not in OPS:
            fn, table, seeded = _STANDINS[name]
            register(name, family="test", severities=table, sampler=table_sampler(table, seeded=seeded))(fn)
            added.append(name)
    return added


def remove(names: list[str]) -> None:
    for name in names:
        OPS.pop(name, None)
