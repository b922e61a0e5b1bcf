"""Array-level image normalisation: everything the ops see is uint8 RGB, H x W x 3."""
from __future__ import annotations

import numpy as np


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Grayscale, RGBA (alpha composited on white), 16-bit and float images to uint8 RGB."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected an H x W or H x W x C image with H, W >= 1, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        f = None
    elif arr.dtype == np.uint16:
        f = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        f = np.clip(arr.astype(np.float32), 0.0, 1.0)
    elif arr.dtype == np.bool_:
        f = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        f = np.clip(arr.astype(np.float32), 0, 255) / 255.0
    else:
        raise ValueError(f"unsupported image dtype {arr.dtype}")
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"expected 1 to 4 channels, got {channels}")
    if f is None:
        f_needed = channels in (2, 4)
        if not f_needed:
            return np.ascontiguousarray(np.repeat(arr, 3, axis=2) if channels == 1 else arr)
        f = arr.astype(np.float32) / 255.0
    if channels in (2, 4):  # composite alpha over white
        alpha = f[:, :, -1:]
        f = f[:, :, :-1] * alpha + (1.0 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return np.ascontiguousarray(np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8))

