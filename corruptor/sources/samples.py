"""Sample photos that ship inside scikit-image: the embedded default for demo and preview."""
from __future__ import annotations

import numpy as np

from corruptor.build.image import to_rgb_uint8

# Colour photos first; grey and RGBA ones exercise conversion. All are in the wheel.
SAMPLE_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
    "retina", "colorwheel", "logo", "camera", "brick", "grass", "gravel", "coins", "moon", "clock",
)


def sample_photo(name: str) -> np.ndarray:
    """One embedded photo as uint8 RGB."""
    import skimage.data

    if name not in SAMPLE_PHOTOS:
        raise KeyError(f"unknown sample photo '{name}'; allowed: {', '.join(SAMPLE_PHOTOS)}")
    return to_rgb_uint8(getattr(skimage.data, name)())


def sample_photos(names: tuple[str, ...] = SAMPLE_PHOTOS) -> dict[str, np.ndarray]:
    return {name: sample_photo(name) for name in names}
