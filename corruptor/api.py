"""The one-call Python entry point: one named corruption at one severity."""
from __future__ import annotations

import numpy as np

from corruptor.build.image import to_rgb_uint8
from maa_format.rng import rng_for
from corruptor.ops.step import run_op


def corrupt(image: np.ndarray, name: str, severity: int, seed: int = 0, key: str = "",
            backend: str = "native") -> np.ndarray:
    """``image`` (any of gray/RGB/RGBA, uint8/uint16/float) corrupted by op ``name`` at level 1..5.

    Deterministic in (image, name, severity, seed, key, backend). Raises
    ``UnknownOpError``, ``SeverityError`` or ``BackendError`` naming the allowed values.
    """
    image = to_rgb_uint8(image)
    out, _ = run_op(image, name, severity, rng_for(seed, key, "corrupt", name), backend=backend)
    return out
