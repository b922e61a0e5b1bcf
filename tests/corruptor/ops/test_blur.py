"""Blur ops: each matches the definition of its reference, and randomness comes from params."""
import numpy as np
import pytest
from scipy import ndimage

from corruptor.ops import blur


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _sequential_glass_scan(image, max_delta, steps):
    """The reference's scan, one pixel at a time: each visited pixel copies the current
    value at its step (the reference's two-view "swap" leaves the other pixel as it is)."""
    out = image.copy()
    height, width = image.shape[:2]
    for scan in steps:
        for h in range(height - max_delta, max_delta, -1):
            for w in range(width - max_delta, max_delta, -1):
                dx, dy = scan[h - max_delta - 1, w - max_delta - 1]
                out[h, w] = out[h + dy, w + dx]
    return out


@pytest.mark.parametrize("shape", [(13, 17), (9, 6), (4, 4)])
@pytest.mark.parametrize("max_delta, iterations", [(1, 2), (2, 3), (3, 2)])
def test_glass_scan_equals_the_sequential_reference_scan(shape, max_delta, iterations):
    height, width = shape
    image = _random_image((height, width, 3), seed=height)
    rows, cols = max(height - 2 * max_delta, 0), max(width - 2 * max_delta, 0)
    steps = np.random.default_rng(1).integers(-max_delta, max_delta, (iterations, rows, cols, 2))
    jumps = steps[..., 1] * width + steps[..., 0]
    source = blur.scan_sources(height, width, max_delta, jumps)
    got = image.reshape(-1, 3)[source].reshape(image.shape)
    np.testing.assert_array_equal(got, _sequential_glass_scan(image, max_delta, steps))


def test_glass_shuffle_only_moves_pixels_locally():
    height, width = 40, 48
    index = np.arange(height * width)
    image = np.stack([index % 256, index // 256, np.zeros_like(index)], -1).astype(np.uint8)
    image = image.reshape(height, width, 3)
    out = blur.shuffle_pixels(image, 2, 1, np.random.default_rng(0))
    source = out[..., 0].astype(int) + 256 * out[..., 1].astype(int)
    sy, sx = np.divmod(source, width)
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(sy - yy, sx - xx)[3:-2, 3:-2]  # the visited block
    assert 0.5 < distance.mean() < 4.0  # one scan, steps of at most 2: a short drift
    assert (distance == 0).mean() < 0.1  # nearly every visited pixel is replaced
    assert np.array_equal(out[:3], image[:3])  # rows above the block are never written


def test_glass_blur_randomness_comes_from_seed():
    image = _random_image((32, 32, 3))
    params = {**blur.GLASS_BLUR[2], "seed": 4}
    np.testing.assert_array_equal(blur.glass_blur(image, params), blur.glass_blur(image, params))
    assert not np.array_equal(blur.glass_blur(image, params),
                              blur.glass_blur(image, {**params, "seed": 5}))


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_gaussian_blur_matches_scipy_with_nearest_edges(sigma):
    image = _random_image((30, 41, 3))
    got = blur.gaussian_blur(image, {"sigma": sigma}).astype(np.float64)
    for truncate, worst, mean in ((blur.GAUSSIAN_BLUR_TRUNCATE, 0.501, 0.3), (4.0, 1.0, 0.3)):
        expected = ndimage.gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0),
                                           mode="nearest", truncate=truncate)
        # Float passes rounded once: the same support is off by the final rounding only;
        # against the reference's 4-sigma support the dropped tails add under half a level.
        assert np.abs(got - expected).max() <= worst
        assert np.abs(got - expected).mean() < mean


# (37, 29): one strip; (150, 33): strips of blur._STRIP_ROWS rows and a short last one.
@pytest.mark.parametrize("shape", [(37, 29, 3), (2 * blur._STRIP_ROWS + 22, 33, 3)])
@pytest.mark.parametrize("radius", [0, 3, 6, 10, 7.5])
def test_defocus_kernel_and_fast_path_agree_with_a_plain_convolution(radius, shape):
    import cv2

    kernel = blur.disk_kernel(radius, 0.5)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    half = kernel.shape[0] // 2
    assert kernel[half, half + int(radius)] > 0 and kernel[half, half] == kernel.max()
    image = _random_image(shape, seed=2)
    expected = cv2.filter2D(image.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    got = blur.defocus_blur(image, {"radius": radius, "alias_blur": 0.5})
    assert np.abs(got - np.rint(expected)).max() <= 1.0


def _dot_image(size=41):
    image = np.zeros((size, size, 3), np.uint8)
    image[size // 2, size // 2] = 255
    return image


def test_motion_blur_streak_follows_the_angle():
    centre = 20
    flat = blur.motion_blur(_dot_image(), {"radius": 5, "sigma": 10.0, "angle": 0.0})[..., 0]
    ys, xs = np.nonzero(flat)
    assert set(ys) == {centre} and xs.max() == centre and xs.min() == centre - 10
    diagonal = blur.motion_blur(_dot_image(), {"radius": 5, "sigma": 10.0, "angle": 45.0})[..., 0]
    ys, xs = np.nonzero(diagonal)
    assert np.all(ys - xs == 0) and ys.max() == centre  # the streak runs up-left of the dot
    # The nearest tap weighs most: the streak fades away from the dot.
    assert flat[centre, centre] > flat[centre, centre - 5] > flat[centre, centre - 10]


def test_motion_blur_angle_is_drawn_within_the_declared_range():
    rngs = [np.random.default_rng(seed) for seed in range(200)]
    angles = [blur._motion_sampler(rng, 3, (64, 64))["angle"] for rng in rngs]
    low, high = blur.MOTION_ANGLE_RANGE
    assert low <= min(angles) < low + 5 and high - 5 < max(angles) <= high


def test_zoom_factors_reproduce_the_reference_ranges():
    counts = [len(blur.zoom_factors(**row)) for row in blur.ZOOM_BLUR]
    assert counts == [12, 16, 11, 13, 11]  # len(np.arange(1, 1.11, 0.01)) ... in the reference
    assert blur.zoom_factors(1.30, 0.03)[-1] == pytest.approx(1.30)


@pytest.mark.parametrize("zoom", [1.07, 1.3])
def test_zoom_layer_is_the_reference_crop_and_resize(zoom):
    import cv2

    height, width = 23, 31
    image = np.random.default_rng(3).random((height, width)).astype(np.float32)
    crop_h, crop_w = int(np.ceil(height / zoom)), int(np.ceil(width / zoom))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = image[top:top + crop_h, left:left + crop_w]
    expected = ndimage.zoom(crop, zoom, order=1)[:height, :width]
    got = cv2.warpAffine(image, blur._zoom_matrix(height, width, zoom), (width, height),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(got - expected).max() < 0.05  # OpenCV places samples to 1/32 pixel


@pytest.mark.parametrize("name, params, field", [
    ("glass_blur", {"sigma": 1.0, "max_delta": 0, "iterations": 1, "seed": 1}, "max_delta"),
    ("motion_blur", {"radius": 2.5, "sigma": 1.0, "angle": 0.0}, "radius"),
    ("zoom_blur", {"max_zoom": 1.2}, "step"),
    ("defocus_blur", {"radius": -1, "alias_blur": 0.5}, "radius"),
])
def test_bad_params_name_the_field(name, params, field):
    with pytest.raises(ValueError, match=f"{name}: .*'{field}'"):
        getattr(blur, name)(_random_image((8, 8, 3)), params)
