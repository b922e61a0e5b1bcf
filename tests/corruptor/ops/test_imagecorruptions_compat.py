"""The `imagecorruptions` backend: all 19 ops run on today's stack, reproducibly."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from corruptor.ops.imagecorruptions_compat import RANDOM_OPS, apply_imagecorruptions
from corruptor.ops.registry import IMAGENET_C, SeverityError, UnknownOpError

DETERMINISTIC_OPS = [n for n in IMAGENET_C if n not in RANDOM_OPS]


@pytest.fixture
def small_image() -> np.ndarray:
    # 32 x 32 keeps the original's per-pixel glass_blur loop cheap.
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:32, 0:32]
    base = np.stack([x * 7, y * 6, (x + y) * 3], axis=-1).astype(np.float32)
    base[8:20, 10:24] = [200, 50, 90]
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("name", IMAGENET_C)
@pytest.mark.parametrize("severity", [1, 5])
def test_shape_dtype_and_input_untouched(name, severity, small_image):
    before = small_image.copy()
    out = apply_imagecorruptions(small_image, name, severity, seed=0)
    assert out.shape == small_image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(small_image, before)


@pytest.mark.parametrize("name", IMAGENET_C)
def test_same_seed_same_bytes(name, small_image):
    a = apply_imagecorruptions(small_image, name, 3, seed=11)
    b = apply_imagecorruptions(small_image, name, 3, seed=11)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", RANDOM_OPS)
def test_different_seeds_differ(name, small_image):
    a = apply_imagecorruptions(small_image, name, 4, seed=1)
    b = apply_imagecorruptions(small_image, name, 4, seed=2)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", DETERMINISTIC_OPS)
def test_filters_ignore_the_seed(name, small_image):
    a = apply_imagecorruptions(small_image, name, 4, seed=1)
    b = apply_imagecorruptions(small_image, name, 4, seed=2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", IMAGENET_C)
def test_changes_the_image(name, small_image):
    out = apply_imagecorruptions(small_image, name, 5, seed=3)
    assert not np.array_equal(out, small_image)


@pytest.mark.parametrize("name", IMAGENET_C)
@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (7, 5, 3), (33, 17, 3), (40, 9, 3)])
def test_tiny_and_odd_sizes(name, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for severity in (1, 5):
        out = apply_imagecorruptions(image, name, severity, seed=0)
        assert out.shape == shape and out.dtype == np.uint8


def test_global_rng_state_is_restored(small_image):
    np.random.seed(123)
    expected = np.random.random(4)
    np.random.seed(123)
    apply_imagecorruptions(small_image, "glass_blur", 2, seed=5)
    apply_imagecorruptions(small_image, "impulse_noise", 2, seed=5)
    np.testing.assert_array_equal(np.random.random(4), expected)


def test_output_does_not_depend_on_global_rng(small_image):
    np.random.seed(1)
    a = apply_imagecorruptions(small_image, "snow", 3, seed=9)
    np.random.seed(2)
    b = apply_imagecorruptions(small_image, "snow", 3, seed=9)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["contrast", "brightness", "pixelate", "jpeg_compression", "zoom_blur"])
def test_matches_the_package_where_it_still_works(name, small_image):
    import imagecorruptions  # importable once our module has loaded it

    expected = imagecorruptions.corrupt(small_image.copy(), severity=3, corruption_name=name)
    np.testing.assert_array_equal(apply_imagecorruptions(small_image, name, 3, seed=0), expected)


def test_gaussian_blur_fix_matches_channelwise_scikit_image(small_image):
    from skimage.filters import gaussian

    expected = (np.clip(gaussian(small_image / 255.0, sigma=3, channel_axis=-1), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(apply_imagecorruptions(small_image, "gaussian_blur", 3, seed=0), expected)


def test_unknown_name_lists_the_19():
    with pytest.raises(UnknownOpError) as err:
        apply_imagecorruptions(np.zeros((8, 8, 3), np.uint8), "gausian_noise", 1, seed=0)
    message = str(err.value)
    assert "gausian_noise" in message and all(name in message for name in IMAGENET_C)


@pytest.mark.parametrize("severity", [0, 6, 2.0, True])
def test_bad_severity(severity):
    with pytest.raises(SeverityError, match="1..5"):
        apply_imagecorruptions(np.zeros((8, 8, 3), np.uint8), "fog", severity, seed=0)


@pytest.mark.parametrize("image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                   np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8)])
def test_bad_image(image):
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        apply_imagecorruptions(image, "fog", 1, seed=0)


@pytest.mark.parametrize("seed", [1.5, "3", None, True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        apply_imagecorruptions(np.zeros((8, 8, 3), np.uint8), "fog", 1, seed=seed)


_CHILD = """
import hashlib, json, sys
import numpy as np
if {block_pkg_resources}:
    sys.modules["pkg_resources"] = None  # as if setuptools >= 81: import fails
from corruptor.ops.imagecorruptions_compat import apply_imagecorruptions
image = np.frombuffer(bytes.fromhex(sys.argv[1]), np.uint8).reshape(32, 32, 3)
out = {{n: hashlib.sha256(apply_imagecorruptions(image, n, 3, seed=42).tobytes()).hexdigest()
       for n in {names!r}}}
out["pkg_resources_left"] = repr(sys.modules.get("pkg_resources", "absent"))
print(json.dumps(out))
"""


def _run_child(image: np.ndarray, names: list[str], block_pkg_resources: bool) -> dict:
    code = _CHILD.format(block_pkg_resources=block_pkg_resources, names=names)
    done = subprocess.run([sys.executable, "-c", code, image.tobytes().hex()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_same_bytes_in_another_process(small_image):
    names = ["gaussian_noise", "impulse_noise", "glass_blur", "fog", "frost"]
    child = _run_child(small_image, names, block_pkg_resources=False)
    for name in names:
        assert child[name] == _digest(apply_imagecorruptions(small_image, name, 3, seed=42)), name


def test_imports_without_pkg_resources(small_image):
    # frost reads its texture files through the stand-in for resource_filename.
    child = _run_child(small_image, ["frost", "fog"], block_pkg_resources=True)
    assert child["frost"] == _digest(apply_imagecorruptions(small_image, "frost", 3, seed=42))
    assert child["pkg_resources_left"] == "None"  # the stand-in does not outlive the import
