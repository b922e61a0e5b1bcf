"""`corruptor.corrupt` and the package's public names."""
import numpy as np
import pytest

import corruptor
from corruptor import corrupt
from corruptor.ops.registry import IMAGENET_C, SeverityError, UnknownOpError
from corruptor.ops.step import BackendError



def test_public_names():
    for name in ("corrupt", "load_recipe", "Recipe", "RecipeError", "Applied", "builtin_recipe", "replay"):
        assert hasattr(corruptor, name)


def test_deterministic_and_seeded(rgb_image):
    a = corrupt(rgb_image, "gaussian_noise", 3, seed=1, key="x")
    np.testing.assert_array_equal(a, corrupt(rgb_image, "gaussian_noise", 3, seed=1, key="x"))
    assert not np.array_equal(a, corrupt(rgb_image, "gaussian_noise", 3, seed=2, key="x"))
    assert not np.array_equal(a, corrupt(rgb_image, "gaussian_noise", 3, seed=1, key="y"))
    assert a.shape == rgb_image.shape and a.dtype == np.uint8 and not np.array_equal(a, rgb_image)


def test_converts_odd_inputs():
    assert corrupt(np.full((5, 6), 100, np.uint8), "brightness", 2).shape == (5, 6, 3)
    assert corrupt(np.zeros((3, 3, 4), np.uint16), "contrast", 1).dtype == np.uint8


def test_errors_name_allowed_values(rgb_image):
    with pytest.raises(UnknownOpError, match="unknown op 'blurr'; allowed: .*brightness"):
        corrupt(rgb_image, "blurr", 3)
    with pytest.raises(SeverityError, match=r"must be an integer in 1\.\.5, got 6"):
        corrupt(rgb_image, "brightness", 6)
    with pytest.raises(BackendError, match="unknown backend 'gpu'; allowed: native, imagecorruptions"):
        corrupt(rgb_image, "brightness", 1, backend="gpu")


def test_imagecorruptions_backend(rgb_image):
    pytest.importorskip("corruptor.ops.imagecorruptions_compat")
    a = corrupt(rgb_image, "contrast", 3, seed=4, backend="imagecorruptions")
    np.testing.assert_array_equal(a, corrupt(rgb_image, "contrast", 3, seed=4, backend="imagecorruptions"))
    assert a.shape == rgb_image.shape and a.dtype == np.uint8
    with pytest.raises(BackendError, match="op 'jpeg' has no imagecorruptions backend; allowed with it: "
                                           + ", ".join(IMAGENET_C[:2])):
        corrupt(rgb_image, "jpeg", 3, backend="imagecorruptions")
