"""Behaviour of the realistic degradations beyond the registry-wide properties."""
import json

import numpy as np
import pytest

from corruptor.ops.registry import get_op
from maa_format.rng import rng_for

REALISTIC = ("low_light", "color_shift", "overexposure", "low_resolution", "jpeg", "webp", "haze",
             "rain", "realesrgan", "realesrgan_blur", "scan_low_contrast", "halftone", "stroke_blur")
FAMILIES = {"low_light": "lowlight", "color_shift": "color", "overexposure": "color",
            "low_resolution": "resolution", "jpeg": "compression", "webp": "compression",
            "haze": "weather", "rain": "weather", "realesrgan": "realesrgan",
            "realesrgan_blur": "realesrgan", "scan_low_contrast": "scan", "halftone": "scan",
            "stroke_blur": "scan"}


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _params(name, level, shape, seed=0):
    return get_op(name).params(rng_for(seed, "k", name), level, shape)


@pytest.fixture(scope="module")
def photo():
    from corruptor.sources.samples import sample_photo

    return np.ascontiguousarray(sample_photo("astronaut")[::4, ::4])  # 128 x 128


@pytest.fixture
def page():
    """A synthetic text page: dark strokes on light paper."""
    image = np.full((40, 60, 3), 235, np.uint8)
    image[8:10, 5:55] = 20
    image[18:21, 5:40] = 20
    image[5:35, 30:32] = 20
    return image


@pytest.mark.parametrize("name", REALISTIC)
def test_family_and_json_params(name):
    op = get_op(name)
    assert op.family == FAMILIES[name]
    for level in (1, 5):
        params = _params(name, level, (32, 48))
        assert json.loads(json.dumps(params)) == params


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_quality_recorded_in_range_and_lower_quality_hurts_more(name, photo):
    op = get_op(name)
    for level in range(1, 6):
        lo, hi = op.severities[level - 1]["quality"]
        qualities = {_params(name, level, (8, 8), seed)["quality"] for seed in range(30)}
        assert all(lo <= q <= hi and isinstance(q, int) for q in qualities)
        assert len(qualities) > 1
    psnr = [_psnr(photo, op.fn(photo, {"quality": q})) for q in (90, 50, 10)]
    assert psnr[0] > psnr[1] > psnr[2]


@pytest.mark.parametrize("name,bad", [("jpeg", 0), ("jpeg", 101), ("webp", 2.5)])
def test_bad_quality_names_the_field(name, bad, photo):
    with pytest.raises(ValueError, match="quality"):
        get_op(name).fn(photo, {"quality": bad})


def test_realesrgan_replays_from_json_params(photo):
    op = get_op("realesrgan")
    for seed in range(4):
        params = _params("realesrgan", 3, photo.shape[:2], seed)
        replayed = json.loads(json.dumps(params))
        out = op.fn(photo, params)
        np.testing.assert_array_equal(out, op.fn(photo.copy(), replayed))
    changed = dict(params, seed=params["seed"] + 1)
    assert not np.array_equal(op.fn(photo, changed), out)


def test_realesrgan_sampler_covers_every_branch():
    seen = set()
    for seed in range(300):
        p = _params("realesrgan", 3, (64, 64), seed)
        for i, stage in enumerate(p["stages"]):
            seen.add(("blur", i, None if stage["blur"] is None else stage["blur"]["type"]))
            seen.add(("resize", i, stage["resize"]["mode"], stage["resize"]["method"]))
            seen.add(("noise", i, stage["noise"]["type"], stage["noise"]["gray"]))
            assert 30 <= stage["jpeg"] <= 95
        seen.add(("final", p["final"]["order"], p["final"]["sinc"] is None))
    assert ("blur", 0, None) not in seen and ("blur", 1, None) in seen  # stage 2 skips blur sometimes
    assert {("noise", i, t, g) for i in (0, 1) for t in ("gaussian", "poisson") for g in (True, False)} <= seen
    assert {("final", o, s) for o in ("sinc_first", "jpeg_first") for s in (True, False)} <= seen
    assert {("blur", 0, t) for t in ("iso", "aniso", "generalized_iso", "plateau_iso", "sinc")} <= seen
    assert {("resize", 0, m, "area") for m in ("up", "down", "keep")} <= seen


def test_realesrgan_severity_scales_ranges(photo):
    op = get_op("realesrgan")
    psnr = [np.mean([_psnr(photo, op.fn(photo, _params("realesrgan", level, photo.shape[:2], s)))
                     for s in range(3)]) for level in (1, 3, 5)]
    assert psnr[0] > psnr[1] > psnr[2]


def test_realesrgan_blur_uses_the_recorded_kernel(photo):
    from corruptor.ops.kernels import apply_kernel, make_kernel

    params = _params("realesrgan_blur", 4, photo.shape[:2])
    expected = apply_kernel(photo, make_kernel(params["kernel"]))
    np.testing.assert_array_equal(get_op("realesrgan_blur").fn(photo, params), expected)


def test_low_light_darkens(photo):
    for level in range(1, 6):
        out = get_op("low_light").fn(photo, _params("low_light", level, photo.shape[:2]))
        assert out.mean() < photo.mean() - 10


def test_overexposure_brightens_and_clips(photo):
    out = get_op("overexposure").fn(photo, _params("overexposure", 5, photo.shape[:2]))
    assert out.mean() > photo.mean() + 20
    assert (out == 255).mean() > (photo == 255).mean() + 0.1


def test_color_shift_neutral_params_are_identity_and_gains_act_per_channel(photo):
    op = get_op("color_shift")
    neutral = op.fn(photo, {"gains": [1.0, 1.0, 1.0], "hue": 0.0, "saturation": 1.0})
    assert np.abs(neutral.astype(int) - photo).max() <= 1
    warm = op.fn(photo, {"gains": [1.2, 1.0, 0.8], "hue": 0.0, "saturation": 1.0})
    assert warm[..., 0].mean() > photo[..., 0].mean() and warm[..., 2].mean() < photo[..., 2].mean()
    grey = op.fn(photo, {"gains": [1.0, 1.0, 1.0], "hue": 0.0, "saturation": 0.0})
    assert np.abs(grey.astype(int) - grey[..., :1]).max() <= 1


def test_low_resolution_factor_one_is_identity_and_bad_method_is_named(photo):
    op = get_op("low_resolution")
    np.testing.assert_array_equal(op.fn(photo, {"factor": 1.0, "down": "area", "up": "bicubic"}), photo)
    assert _psnr(photo, op.fn(photo, {"factor": 4.0, "down": "area", "up": "bilinear"})) < 35
    with pytest.raises(ValueError, match="'up'"):
        op.fn(photo, {"factor": 2.0, "down": "area", "up": "magic"})
    with pytest.raises(ValueError, match="factor"):
        op.fn(photo, {"factor": 0.5, "down": "area", "up": "bilinear"})


def test_low_resolution_keeps_one_pixel():
    image = np.random.default_rng(0).integers(0, 256, (3, 2, 3), dtype=np.uint8)
    out = get_op("low_resolution").fn(image, {"factor": 8.0, "down": "area", "up": "bicubic"})
    assert out.shape == image.shape and np.ptp(out.reshape(-1, 3), axis=0).max() == 0  # one pixel, spread


def test_haze_raises_dark_channel_more_with_beta(photo):
    op = get_op("haze")
    params = _params("haze", 3, photo.shape[:2])
    dark = [photo.min(axis=2).mean()]
    for beta in (0.5, 2.0):
        dark.append(op.fn(photo, dict(params, beta=beta)).min(axis=2).mean())
    assert dark[0] < dark[1] < dark[2]


def test_haze_is_denser_toward_the_top(photo):
    flat = np.full((64, 64, 3), 30, np.uint8)
    params = dict(_params("haze", 3, (64, 64)), depth_noise=0.0)
    out = get_op("haze").fn(flat, params)
    assert out[:8].mean() > out[-8:].mean() + 20


def test_rain_only_brightens_without_veil_and_seeds_differ(photo):
    op = get_op("rain")
    params = dict(_params("rain", 4, photo.shape[:2]), veil=0.0)
    out = op.fn(photo, params)
    assert (out.astype(int) >= photo.astype(int) - 1).all() and out.mean() > photo.mean() + 1
    assert not np.array_equal(out, op.fn(photo, dict(params, seed=params["seed"] + 1)))


def test_rain_streaks_follow_the_angle():
    from corruptor.ops.atmosphere import streak_kernel

    vertical = streak_kernel(15, 0.5, 0.0)
    c = vertical.shape[0] // 2
    assert vertical[c - 6, c] > 0.9 and vertical[c, c - 6] < 1e-3
    tilted = streak_kernel(15, 0.5, 45.0)  # top leans to the right
    assert tilted[c - 4, c + 4] > 0.9 and tilted[c - 4, c - 4] < 1e-3


def test_scan_low_contrast_compresses_toward_paper(page):
    out = get_op("scan_low_contrast").fn(page, _params("scan_low_contrast", 4, page.shape[:2]))
    assert out.astype(float).std() < 0.6 * page.astype(float).std()
    assert out[page[..., 0] == 20].mean() > 60  # faded ink


def test_halftone_prints_dots_and_keeps_tone():
    op = get_op("halftone")
    grey = np.full((64, 64, 3), 128, np.uint8)
    params = {"period": 4.0, "scan_scale": 1.0, "rotation": 0.0, "blur": 0.0}
    out = op.fn(grey, params)
    assert set(np.unique(out)) <= {0, 255}  # binary ink before any scanner blur
    assert abs(out.mean() - 128) < 20
    moire = op.fn(grey, dict(params, scan_scale=0.8, blur=0.4))
    assert 0 < moire.std() and abs(moire.mean() - 128) < 20


@pytest.mark.parametrize("stroke,sign", [("thicken", -1), ("thin", 1)])
def test_stroke_blur_morphology_direction(page, stroke, sign):
    out = get_op("stroke_blur").fn(page, {"sigma": 0.0, "radius": 1, "stroke": stroke})
    assert sign * (out.astype(float).mean() - page.mean()) > 2
    with pytest.raises(ValueError, match="stroke"):
        get_op("stroke_blur").fn(page, {"sigma": 1.0, "radius": 1, "stroke": "wobble"})


@pytest.mark.parametrize("name", REALISTIC)
def test_level_five_damages_more_than_level_one(name, photo):
    op = get_op(name)
    psnr = [np.mean([_psnr(photo, op.fn(photo, _params(name, level, photo.shape[:2], s)))
                     for s in range(2)]) for level in (1, 5)]
    assert psnr[1] < psnr[0]
