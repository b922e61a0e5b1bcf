import numpy as np
import pytest


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A deterministic 48 x 64 RGB image with edges, gradients and texture."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.float32)
    base[10:30, 20:40] = [220, 40, 90]
    base += rng.normal(0, 8, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
