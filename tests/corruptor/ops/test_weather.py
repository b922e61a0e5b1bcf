"""Behaviour of the weather ops beyond the registry-wide properties."""
import numpy as np
import pytest

from corruptor.ops import weather
from corruptor.ops.weather import (FOG, FROST, FROST_TEXTURES, SNOW, SPATTER, fog, frost,
                               frost_texture, frost_texture_dir, plasma_fractal, snow, spatter)


def test_frost_textures_found_loaded_once_and_read_only():
    assert frost_texture_dir().is_dir()
    for name in FROST_TEXTURES:
        texture = frost_texture(name)
        assert texture.dtype == np.uint8 and texture.ndim == 3 and texture.shape[2] == 3
        assert min(texture.shape[:2]) >= 300 and texture.std() > 5
        assert not texture.flags.writeable
        assert frost_texture(name) is texture


def test_frost_unknown_texture_names_field():
    with pytest.raises(ValueError, match="'texture' must be one of"):
        frost(np.zeros((8, 8, 3), np.uint8), dict(FROST[0], texture="ice.png", crop_y=0.0, crop_x=0.0))


def test_frost_covers_images_larger_than_texture():
    image = np.zeros((16, 1200, 3), np.uint8)  # wider than every texture
    out = frost(image, dict(FROST[4], texture=FROST_TEXTURES[1], crop_y=0.9, crop_x=0.9))
    # Frost on black: every column shows texture, none falls off the resampled crop.
    assert (out.max(axis=(0, 2)) > 0).all()


def test_frost_crop_moves_with_params():
    image = np.full((40, 40, 3), 100, np.uint8)
    a = frost(image, dict(FROST[2], texture=FROST_TEXTURES[0], crop_y=0.0, crop_x=0.0))
    b = frost(image, dict(FROST[2], texture=FROST_TEXTURES[0], crop_y=0.7, crop_x=0.3))
    assert not np.array_equal(a, b)


def test_plasma_deterministic_per_seed_and_normalised():
    a = plasma_fractal(64, 1.7, np.random.default_rng(5))
    np.testing.assert_array_equal(a, plasma_fractal(64, 1.7, np.random.default_rng(5)))
    assert not np.array_equal(a, plasma_fractal(64, 1.7, np.random.default_rng(6)))
    assert a.shape == (64, 64) and a.min() == 0.0 and a.max() == 1.0


def test_plasma_rougher_with_lower_decay():
    # Neighbour differences measure roughness; a slower decay keeps fine octaves strong.
    def roughness(decay):
        return np.mean([np.abs(np.diff(plasma_fractal(128, decay, np.random.default_rng(s)), axis=1)).mean() for s in range(4)])

    assert roughness(1.4) > roughness(2.0)


def test_plasma_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        plasma_fractal(48, 2.0, np.random.default_rng(0))


def test_fog_keeps_black_black_and_lifts_dark_images():
    black = np.zeros((20, 30, 3), np.uint8)
    np.testing.assert_array_equal(fog(black, dict(FOG[4], seed=1)), black)
    dark = np.full((20, 30, 3), 40, np.uint8)
    dark[0, 0] = 200
    out = fog(dark, dict(FOG[4], seed=1))
    assert out.max() <= 200 and out.std() > 5


def test_snow_kernel_is_a_normalised_ray():
    vertical = weather._line_kernel(10, 4.0, -90.0, (512, 512))
    assert vertical.sum() == pytest.approx(1.0, abs=1e-6)
    rows, cols = np.nonzero(vertical)
    centre = vertical.shape[0] // 2
    assert (cols == centre).all() and (rows <= centre).all() and len(rows) == 21
    # Weights fall with distance from the pixel itself.
    assert np.all(np.diff(vertical[rows, cols][::-1]) <= 0)


def test_snow_kernel_drops_taps_beyond_small_images():
    kernel = weather._line_kernel(10, 4.0, -90.0, (3, 3))
    assert np.count_nonzero(kernel) == 3


def test_snow_brightens():
    image = np.full((48, 64, 3), 90, np.uint8)
    out = snow(image, dict(SNOW[4], angle=-100.0, seed=3))
    assert out.mean() > image.mean() + 10
    assert (out >= image).all()


def test_spatter_water_only_adds_light():
    image = np.random.default_rng(0).integers(0, 200, (64, 64, 3), dtype=np.uint8)
    out = spatter(image, dict(SPATTER[2], seed=4))
    assert (out >= image).all() and (out > image).any()


def test_spatter_mud_pulls_towards_brown():
    image = np.full((64, 64, 3), 255, np.uint8)
    out = spatter(image, dict(SPATTER[4], seed=4))
    changed = (out != image).any(axis=2)
    assert changed.mean() > 0.05
    assert (out <= image).all()
    # White mixed with brown (R > G > B) keeps that order wherever mud landed.
    r, g, b = (out[..., c].astype(int)[changed] for c in range(3))
    assert (r >= g).all() and (g >= b).all() and (r > b).all()


def test_spatter_unknown_material_names_field():
    with pytest.raises(ValueError, match="'material' must be one of water, mud"):
        spatter(np.zeros((8, 8, 3), np.uint8), dict(SPATTER[0], material="oil", seed=0))


@pytest.mark.parametrize("op, params, message", [
    (fog, dict(FOG[0], thickness=0.0, seed=1), "fog: parameter 'thickness' must be in (0.0, 100.0]"),
    (fog, dict(FOG[0], seed=-1), "fog: parameter 'seed' must be a non-negative integer"),
    (snow, dict(SNOW[0], angle=-100.0, seed=1, blend=1.5), "snow: parameter 'blend' must be in [0.0, 1.0]"),
    (frost, dict(FROST[0], texture=FROST_TEXTURES[0], crop_y=2.0, crop_x=0.0), "frost: parameter 'crop_y'"),
    (spatter, dict(SPATTER[0], seed=1, std="wide"), "spatter: parameter 'std' must be a number"),
])
def test_bad_params_name_op_and_field(op, params, message):
    with pytest.raises(ValueError) as error:
        op(np.zeros((8, 8, 3), np.uint8), params)
    assert message in str(error.value)
