"""Behaviour of the digital ops beyond the registry-wide properties."""
import io

import numpy as np
import pytest
from PIL import Image

from corruptor.ops.digital import (BRIGHTNESS, CONTRAST, ELASTIC, JPEG, PIXELATE, SATURATE, brightness,
                               contrast, elastic_transform, jpeg_compression, pixelate, saturate)


@pytest.fixture
def colourful():
    return np.random.default_rng(7).integers(0, 256, (40, 52, 3), dtype=np.uint8)


def test_brightness_raises_value_and_keeps_hue(colourful):
    shift = BRIGHTNESS[2]["shift"]
    out = brightness(colourful, BRIGHTNESS[2])
    v_in, v_out = colourful.max(axis=2).astype(float), out.max(axis=2).astype(float)
    np.testing.assert_allclose(v_out, np.minimum(v_in + 255 * shift, 255), atol=1)
    # Channels scale together: the order of channels within a pixel is kept.
    assert (np.argsort(colourful, axis=2, kind="stable")[..., -1] == np.argmax(out, axis=2))[v_in > 0].mean() > 0.95


def test_brightness_turns_black_into_grey():
    out = brightness(np.zeros((2, 2, 3), np.uint8), BRIGHTNESS[4])
    assert (out == round(255 * BRIGHTNESS[4]["shift"])).all()


def test_brightness_greys_only_black_pixels():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 1] = (10, 0, 0)  # dark red: its zero channels must stay zero
    image[1, 2] = (180, 90, 30)
    out = brightness(image, BRIGHTNESS[0])
    grey = round(255 * BRIGHTNESS[0]["shift"])
    black = image.max(axis=2) == 0
    assert (out[black] == grey).all()
    assert out[0, 1, 0] > 10 and (out[0, 1, 1:] == 0).all()
    gain = (180 + 255 * BRIGHTNESS[0]["shift"]) / 180  # every channel scales with V
    assert out[1, 2, 0] in (205, 206) and tuple(out[1, 2, 1:]) == (round(90 * gain), round(30 * gain))


def test_contrast_is_the_affine_map_to_the_channel_means(colourful):
    factor = CONTRAST[2]["factor"]
    means = colourful.reshape(-1, 3).mean(axis=0)
    exact = np.clip(np.rint((colourful - means) * factor + means), 0, 255)
    diff = np.abs(contrast(colourful, CONTRAST[2]).astype(float) - exact)
    # OpenCV's colour transform computes in float32: a tie can round the other way.
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_contrast_keeps_means_and_scales_spread(colourful):
    factor = CONTRAST[1]["factor"]
    out = contrast(colourful, CONTRAST[1]).astype(float)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), colourful.mean(axis=(0, 1)), atol=0.6)
    np.testing.assert_allclose(out.std(axis=(0, 1)), colourful.std(axis=(0, 1)) * factor, rtol=0.05)


def _saturation(image):
    v = image.max(axis=2).astype(float)
    return np.divide(v - image.min(axis=2), v, out=np.zeros_like(v), where=v > 0)


def test_saturate_scales_saturation_and_keeps_value(colourful):
    out = saturate(colourful, SATURATE[0])
    np.testing.assert_allclose(out.max(axis=2), colourful.max(axis=2), atol=1)
    bright = colourful.max(axis=2) > 64
    np.testing.assert_allclose(_saturation(out)[bright], _saturation(colourful)[bright] * SATURATE[0]["scale"],
                               atol=0.03)


def test_saturate_grey_stays_grey_without_offset_and_turns_red_with_it():
    grey = np.full((3, 3, 3), 200, np.uint8)
    np.testing.assert_array_equal(saturate(grey, SATURATE[2]), grey)
    tinted = saturate(grey, SATURATE[4])  # offset 0.2: hue 0 of greys is red
    assert (tinted[..., 0] == 200).all()
    assert (tinted[..., 1:] == round(200 * (1 - SATURATE[4]["offset"]))).all()


def test_elastic_without_amplitude_is_identity(colourful):
    out = elastic_transform(colourful, dict(ELASTIC[4], alpha=0.0, seed=1))
    np.testing.assert_array_equal(out, colourful)


def test_elastic_displacement_is_a_few_pixels_and_scales_with_alpha():
    x = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (128, 1))
    ramp = np.repeat(x[:, :, None], 3, axis=2)

    def mean_shift_px(alpha):
        out = elastic_transform(ramp, dict(ELASTIC[4], alpha=alpha, seed=2)).astype(int)
        return (np.abs(out - ramp)[4:-4, 4:-4] / 2.0).mean()  # the ramp rises 2 per pixel

    full = mean_shift_px(ELASTIC[4]["alpha"])
    assert 0.2 < full < 5
    assert mean_shift_px(ELASTIC[4]["alpha"] / 2) < 0.7 * full


def test_pixelate_is_blockwise_constant(colourful):
    factor = PIXELATE[4]["factor"]
    out = pixelate(colourful, PIXELATE[4])
    h, w = colourful.shape[:2]
    distinct_rows = 1 + np.count_nonzero(np.any(np.diff(out.astype(int), axis=0) != 0, axis=(1, 2)))
    distinct_cols = 1 + np.count_nonzero(np.any(np.diff(out.astype(int), axis=1) != 0, axis=(0, 2)))
    assert distinct_rows == int(h * factor) and distinct_cols == int(w * factor)


# Sides where no box edge falls exactly on a pixel centre: at such a tie Pillow's float
# edges drop the pixel from both boxes, ours give it to the later one.
@pytest.mark.parametrize("shape", [(40, 52, 3), (79, 39, 3)])
@pytest.mark.parametrize("row", PIXELATE)
def test_pixelate_matches_pillow_box_then_nearest(row, shape):
    colourful = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    h, w = colourful.shape[:2]
    small = Image.fromarray(colourful).resize((int(w * row["factor"]), int(h * row["factor"])), Image.BOX)
    expected = np.asarray(small.resize((w, h), Image.NEAREST)).astype(int)
    # Pillow rounds after each separable pass, we once.
    assert np.abs(pixelate(colourful, row).astype(int) - expected).max() <= 1


def test_pixelate_rejects_bad_factor(colourful):
    with pytest.raises(ValueError, match=r"pixelate: parameter 'factor' must be in \(0.0, 1.0\]"):
        pixelate(colourful, {"factor": 1.5})


@pytest.mark.parametrize("row", [JPEG[0], JPEG[4]])
def test_jpeg_equals_decode_of_jpeg_at_table_quality(colourful, row):
    buffer = io.BytesIO()
    Image.fromarray(colourful).save(buffer, "JPEG", quality=row["quality"])
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(jpeg_compression(colourful, row), expected)


@pytest.mark.parametrize("quality", [0, 101, 50.5, True])
def test_jpeg_rejects_bad_quality(colourful, quality):
    with pytest.raises(ValueError, match=r"jpeg_compression: parameter 'quality' must be an integer in \[1, 100\]"):
        jpeg_compression(colourful, {"quality": quality})


def test_elastic_needs_a_seed(colourful):
    with pytest.raises(ValueError, match="elastic_transform: missing parameter 'seed'"):
        elastic_transform(colourful, ELASTIC[0])
