"""Noise ops: the statistics of each noise field match its severity parameter."""
import math

import numpy as np
import pytest

from corruptor.ops import noise

GRAY = np.full((96, 96, 3), 128, np.uint8)


def test_gaussian_noise_std_matches_sigma():
    sigma = noise.GAUSSIAN_NOISE[2]["sigma"]
    out = noise.gaussian_noise(GRAY, {"sigma": sigma, "seed": 7}).astype(np.float64)
    delta = (out - 128.0) / 255.0
    assert abs(delta.mean()) < 0.005
    assert delta.std() == pytest.approx(sigma, rel=0.03)


def test_speckle_noise_scales_with_intensity():
    sigma = noise.SPECKLE_NOISE[1]["sigma"]
    image = GRAY.copy()
    image[:48] = 40
    out = noise.speckle_noise(image, {"sigma": sigma, "seed": 3}).astype(np.float64)
    assert (out[48:] - 128).std() == pytest.approx(sigma * 128, rel=0.05)
    assert (out[:48] - 40).std() == pytest.approx(sigma * 40, rel=0.05)


def test_impulse_noise_changes_the_declared_fraction_half_salt_half_pepper():
    amount = noise.IMPULSE_NOISE[3]["amount"]
    out = noise.impulse_noise(GRAY, {"amount": amount, "seed": 5})
    salt, pepper = np.mean(out == 255), np.mean(out == 0)
    assert salt + pepper == pytest.approx(amount, abs=0.01)
    assert salt == pytest.approx(pepper, abs=0.01)
    assert np.all((out == 128) | (out == 0) | (out == 255))


def test_impulse_noise_extremes_and_independent_channels():
    np.testing.assert_array_equal(noise.impulse_noise(GRAY, {"amount": 0.0, "seed": 1}), GRAY)
    full = noise.impulse_noise(GRAY, {"amount": 1.0, "seed": 1})
    assert np.all((full == 0) | (full == 255)) and np.mean(full == 0) == pytest.approx(0.5, abs=0.01)
    amount = noise.IMPULSE_NOISE[4]["amount"]
    flipped = noise.impulse_noise(GRAY, {"amount": amount, "seed": 9}) != 128
    # One draw per channel value, not per pixel: all three flip together with amount**3.
    assert flipped.all(axis=2).mean() == pytest.approx(amount**3, abs=0.006)


def test_impulse_noise_takes_strided_images_and_is_seeded():
    wide = np.random.default_rng(0).integers(0, 256, (40, 90, 3), dtype=np.uint8)[:, ::2]
    params = {"amount": 0.2, "seed": 4}
    out = noise.impulse_noise(wide, params)
    assert out.shape == wide.shape
    np.testing.assert_array_equal(out, noise.impulse_noise(wide.copy(), params))
    kept = (out != 0) & (out != 255)
    np.testing.assert_array_equal(out[kept], wide[kept])
    assert not np.array_equal(out, noise.impulse_noise(wide, {**params, "seed": 5}))


@pytest.mark.parametrize("photons", [3.0, 60.0])
@pytest.mark.parametrize("level", [0, 1, 37, 255])
def test_poisson_counts_follow_the_poisson_law(photons, level):
    image = np.full((128, 128, 3), level, np.uint8)
    counts = noise._poisson_counts(image, photons, np.random.default_rng(11)).ravel()
    lam = level / 255.0 * photons
    top = int(lam + 6 * math.sqrt(lam) + 6)
    k = np.arange(top + 1)
    pmf = np.exp(k * np.log(max(lam, 1e-300)) - lam - np.array([math.lgamma(i + 1) for i in k]))
    if lam == 0:
        pmf = (k == 0).astype(float)
    seen = np.bincount(counts, minlength=top + 1)[: top + 1] / counts.size
    assert np.abs(seen - pmf).max() < 0.01
    assert counts.mean() == pytest.approx(lam, abs=0.02 + 0.01 * lam)


def test_shot_noise_mean_and_variance():
    photons = noise.SHOT_NOISE[0]["photons"]
    out = noise.shot_noise(GRAY, {"photons": photons, "seed": 2}).astype(np.float64)
    assert out.mean() == pytest.approx(128, abs=1.0)
    # Var of (255 / photons) * Poisson(128 / 255 * photons).
    assert out.var() == pytest.approx(255.0 * 128 / photons, rel=0.06)


@pytest.mark.parametrize("name, params, field", [
    ("gaussian_noise", {"sigma": -0.1, "seed": 1}, "sigma"),
    ("gaussian_noise", {"sigma": 0.1}, "seed"),
    ("impulse_noise", {"amount": 1.5, "seed": 1}, "amount"),
    ("shot_noise", {"photons": 0, "seed": 1}, "photons"),
    ("speckle_noise", {"sigma": "big", "seed": 1}, "sigma"),
    ("speckle_noise", {"sigma": 0.2, "seed": -3}, "seed"),
])
def test_bad_params_name_the_field(name, params, field):
    with pytest.raises(ValueError, match=f"{name}: .*'{field}'"):
        getattr(noise, name)(GRAY, params)
