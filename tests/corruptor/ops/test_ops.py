"""Properties every registered op must have, parametrised over the whole registry."""
import numpy as np
import pytest

from corruptor.ops.registry import IMAGENET_C, LEVELS, get_op, load_all
from maa_format.rng import rng_for

OPS = sorted(load_all())


def _apply(name, image, level, seed):
    op = get_op(name)
    params = op.params(rng_for(seed, "test-key", name), level, image.shape[:2])
    return op.fn(image.copy(), params)


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_imagenet_c_complete():
    assert set(IMAGENET_C) <= set(OPS)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("level", LEVELS)
def test_shape_dtype_and_input_untouched(name, level, rgb_image):
    before = rgb_image.copy()
    out = _apply(name, rgb_image, level, 0)
    assert out.shape == rgb_image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(rgb_image, before)


@pytest.mark.parametrize("name", OPS)
def test_deterministic_per_seed(name, rgb_image):
    a = _apply(name, rgb_image, 3, 11)
    b = _apply(name, rgb_image, 3, 11)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (7, 5, 3), (33, 17, 3)])
def test_tiny_and_odd_sizes(name, shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for level in (1, 5):
        out = _apply(name, image, level, 0)
        assert out.shape == shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", OPS)
def test_severity_orders_damage(name):
    """Mean PSNR over a few images does not rise from level 1 to level 5."""
    from corruptor.sources.samples import sample_photo

    images = [sample_photo(n)[:96, :128] for n in ("astronaut", "coffee", "chelsea")]
    psnr = [np.mean([_psnr(im, _apply(name, im, level, 3)) for im in images]) for level in (1, 5)]
    assert psnr[1] <= psnr[0] + 0.5, f"{name}: PSNR level1={psnr[0]:.2f} level5={psnr[1]:.2f}"


NOISY = [n for n in OPS if "seed" in get_op(n).override_keys()]


@pytest.mark.parametrize("name", NOISY)
def test_different_seeds_differ(name, rgb_image):
    assert not np.array_equal(_apply(name, rgb_image, 4, 1), _apply(name, rgb_image, 4, 2))
