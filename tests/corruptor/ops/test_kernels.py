"""Blur kernels: normalised, symmetric where the model says so, oriented by theta."""
import json
import math

import numpy as np
import pytest

from corruptor.ops import kernels as K

SPECS = [
    {"type": "iso", "size": 21, "sigma_x": 2.0},
    {"type": "aniso", "size": 15, "sigma_x": 3.0, "sigma_y": 0.8, "theta": 0.6},
    {"type": "generalized_iso", "size": 13, "sigma_x": 1.5, "beta": 0.6},
    {"type": "generalized_aniso", "size": 13, "sigma_x": 2.5, "sigma_y": 1.0, "theta": -1.0, "beta": 3.0},
    {"type": "plateau_iso", "size": 11, "sigma_x": 1.2, "beta": 1.5},
    {"type": "plateau_aniso", "size": 17, "sigma_x": 2.0, "sigma_y": 0.7, "theta": 2.0, "beta": 1.2},
    {"type": "sinc", "size": 21, "omega_c": 1.0},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["type"])
def test_sums_to_one_odd_square_float32(spec):
    k = K.make_kernel(spec)
    assert k.dtype == np.float32 and k.shape == (spec["size"],) * 2
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-5


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["type"])
def test_point_symmetric(spec):
    k = K.make_kernel(spec)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)


@pytest.mark.parametrize("spec", [s for s in SPECS if "aniso" not in s["type"]], ids=lambda s: s["type"])
def test_isotropic_kernels_have_all_mirror_symmetries(spec):
    k = K.make_kernel(spec)
    np.testing.assert_allclose(k, k[::-1, :], atol=1e-7)
    np.testing.assert_allclose(k, k[:, ::-1], atol=1e-7)
    np.testing.assert_allclose(k, k.T, atol=1e-7)


def _principal_angle(k):
    """Angle (radians, counter-clockwise with rows pointing up) of the kernel's long axis."""
    half = k.shape[0] // 2
    ax = np.arange(-half, half + 1)
    x, y = np.meshgrid(ax, -ax)
    cxx, cyy, cxy = (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()
    return 0.5 * math.atan2(2 * cxy, cxx - cyy)


@pytest.mark.parametrize("kind", ["aniso", "generalized_aniso", "plateau_aniso"])
@pytest.mark.parametrize("theta", [0.0, 0.5, math.pi / 2, -1.1, 2.6])
def test_anisotropic_orientation_follows_theta(kind, theta):
    # beta 2 keeps the plateau's polynomial tail inside the window, so moments see its shape
    spec = {"type": kind, "size": 21, "sigma_x": 3.0, "sigma_y": 1.0, "theta": theta, "beta": 2.0}
    angle = _principal_angle(K.make_kernel(spec))
    diff = (angle - theta + math.pi / 2) % math.pi - math.pi / 2  # axes are equal modulo pi
    assert abs(diff) < 0.05, (angle, theta)


def test_gaussian_matches_closed_form_and_iso_equals_equal_sigmas():
    k = K.gaussian_kernel(9, 1.3)
    ax = np.arange(-4, 5)
    g = np.exp(-0.5 * (ax / 1.3) ** 2)
    np.testing.assert_allclose(k, np.outer(g, g) / np.outer(g, g).sum(), atol=1e-7)
    np.testing.assert_allclose(K.gaussian_kernel(9, 1.3, 1.3, 0.9), k, atol=1e-7)


def test_sinc_has_negative_lobes_and_wider_cutoff_is_sharper():
    narrow, wide = K.sinc_kernel(21, math.pi / 5), K.sinc_kernel(21, math.pi * 0.9)
    assert narrow.min() < 0
    assert wide[10, 10] > narrow[10, 10]


@pytest.mark.parametrize("bad", [
    {"type": "box", "size": 5},
    {"type": "iso", "size": 4, "sigma_x": 1.0},
    {"type": "iso", "size": 5, "sigma_x": 0.0},
    {"type": "aniso", "size": 5, "sigma_x": 1.0},
    {"type": "sinc", "size": 5, "omega_c": 4.0},
    {"type": "plateau_iso", "size": 5, "sigma_x": 1.0},
])
def test_bad_specs_name_the_field(bad):
    with pytest.raises(ValueError, match="kernel"):
        K.make_kernel(bad)


def test_sampled_specs_are_json_and_rebuild_identically():
    rng = np.random.default_rng(5)
    kinds = set()
    for _ in range(200):
        spec = K.sample_kernel(rng)
        kinds.add(spec["type"])
        again = json.loads(json.dumps(spec))
        np.testing.assert_array_equal(K.make_kernel(spec), K.make_kernel(again))
        assert spec["size"] % 2 == 1 and 7 <= spec["size"] <= 21
    assert kinds == set(K.KERNEL_TYPES)


def test_apply_kernel_matches_direct_filter_and_handles_tiny_images():
    import cv2

    image = np.random.default_rng(0).random((19, 23, 3), dtype=np.float32)
    for spec in SPECS:
        k = K.make_kernel(spec)
        direct = cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REFLECT_101)
        # separable passes stand in for the 2-D filter within the declared L1 tolerance
        np.testing.assert_allclose(K.apply_kernel(image, k), direct, atol=K.SEPARABLE_TOL)
    tiny = np.full((1, 2, 3), 77, np.uint8)
    assert np.array_equal(K.apply_kernel(tiny, K.make_kernel(SPECS[0])), tiny)


def test_separable_path_on_uint8_agrees_with_2d_filter():
    import cv2

    k = K.sinc_kernel(21, 1.0)
    terms = K.separable_terms(K.trim_kernel(k))
    assert terms is not None and len(terms) > 1  # exercised: a circular kernel of low rank
    image = np.random.default_rng(1).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    direct = cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REFLECT_101)
    out = K.apply_kernel(image, k)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - direct).max() <= 1
    assert K.separable_terms(K.gaussian_kernel(21, 3.0, 0.6, 0.7)) is None  # rotated, thin: 2-D
