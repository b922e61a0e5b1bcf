"""The local stage: region choice, feathered compositing, region provenance, fallbacks."""
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from corruptor.masks import rle
from corruptor.recipe.local import band_reach, candidates, composite, feather_alpha, select_regions
from corruptor.recipe.recipe import load_recipe, replay
from maa_format.rng import rng_for



H, W = 40, 48


def _blob(cy, cx, r):
    y, x = np.mgrid[0:H, 0:W]
    return (y - cy) ** 2 + ((x - cx) * 0.8) ** 2 <= r * r


def _image(seed=0):
    return np.random.default_rng(seed).integers(40, 200, (H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("feather", [0, 1, 5, 9.5])
def test_outside_band_bit_identical_inside_core_fully_corrupted(feather):
    base = _image()
    corrupted = 255 - base
    mask = _blob(18, 22, 9)
    out = composite(base, corrupted, mask, feather)
    d_out = distance_transform_edt(~mask)
    d_in = distance_transform_edt(mask)
    outside = d_out >= band_reach(feather)          # the documented band edge
    core = d_in >= band_reach(feather)
    assert outside.sum() > 0 and core.sum() > 0
    np.testing.assert_array_equal(out[outside], base[outside])
    np.testing.assert_array_equal(out[core], corrupted[core])


def test_edges_blend_with_intermediate_values():
    base = np.full((H, W, 3), 50, np.uint8)
    corrupted = np.full((H, W, 3), 250, np.uint8)
    mask = _blob(20, 24, 10)
    out = composite(base, corrupted, mask, 8)[:, :, 0]
    between = (out > 50) & (out < 250)
    assert between.sum() >= 40
    # the soft edge straddles the boundary: blended pixels on both sides of it
    assert (between & mask).any() and (between & ~mask).any()
    # alpha falls monotonically along a row leaving the centre
    row = out[20, 24:]
    assert np.all(np.diff(row.astype(int)) <= 0)


def test_feather_zero_is_a_hard_mask():
    alpha, (y0, y1, x0, x1) = feather_alpha(_blob(10, 10, 5), 0)
    assert set(np.unique(alpha)) <= {0.0, 1.0}


def test_region_covering_the_image_and_touching_borders():
    base, corrupted = _image(), _image(1)
    full = np.ones((H, W), bool)
    np.testing.assert_array_equal(composite(base, corrupted, full, 6), corrupted)
    corner = np.zeros((H, W), bool)
    corner[:10, :12] = True
    out = composite(base, corrupted, corner, 4)
    np.testing.assert_array_equal(out[0, 0], corrupted[0, 0])  # no feathering against the image edge


def test_candidates_filter_by_area_fraction():
    tiny = np.zeros((H, W), bool)
    tiny[0, 0] = True
    mid = _blob(20, 20, 8)
    huge = np.ones((H, W), bool)
    empty = np.zeros((H, W), bool)
    assert candidates([tiny, mid, huge, empty], (0.02, 0.5)) == [1]
    assert candidates([tiny, mid, huge, empty], (0.0, 1.0)) == [0, 1, 2]


def test_select_regions_count_range_without_replacement():
    masks = [_blob(10 + 3 * i, 10 + 4 * i, 6) for i in range(6)]
    counts = set()
    for i in range(60):
        picked = select_regions(masks, (0.0, 1.0), (2, 4), rng_for(0, str(i)))
        assert len(set(picked)) == len(picked) and 2 <= len(picked) <= 4
        counts.add(len(picked))
    assert counts == {2, 3, 4}
    assert len(select_regions(masks[:2], (0.0, 1.0), (3, 5), rng_for(0, "x"))) == 2  # capped at the pool


LOCAL = {"name": "loc", "local": {"ops": {"op": "brightness", "severity": 5}, "regions": [1, 2],
                                  "area": [0.05, 0.5], "feather": 6}}


def test_recipe_local_stage_untouched_outside_band_and_rle_round_trip():
    img = np.full((H, W, 3), 60, np.uint8)
    masks = [_blob(12, 14, 7), _blob(28, 34, 8), np.ones((H, W), bool)]  # the last is too large
    recipe = load_recipe(LOCAL)
    for i in range(5):
        a = recipe.apply(img, seed=0, key=str(i), masks=masks)
        assert a.status == "ok" and 1 <= len(a.regions) <= 2 and a.ops == []
        union = np.zeros((H, W), bool)
        for region in a.regions:
            decoded = rle.decode(region["rle"])
            assert any(np.array_equal(decoded, m) for m in masks[:2])
            assert region["area"] == decoded.sum() == rle.area(region["rle"])
            x, y, w, h = region["bbox"]
            assert decoded[y:y + h, x:x + w].sum() == region["area"]
            assert region["op"] == "brightness" and region["severity"] == 5 and len(region["ops"]) == 1
            union |= decoded
        assert a.mask.dtype == np.uint8 and set(np.unique(a.mask)) <= {0, 255}
        # mask.png covers the regions and their feather bands: every changed pixel is inside it
        assert (a.mask[union] == 255).all() and (a.mask > 0).sum() > union.sum()
        changed = (a.image != img).any(axis=2)
        assert not changed[a.mask == 0].any()
        outside = distance_transform_edt(~union) >= band_reach(6)
        assert not (a.mask > 0)[outside].any()
        np.testing.assert_array_equal(a.image[outside], img[outside])
        assert (a.image[union] != img[union]).any()


def test_fallback_global_only_records_why():
    recipe = load_recipe({**LOCAL, "global": {"op": "contrast", "severity": 2},
                          "local": {**LOCAL["local"], "fallback": "global_only"}})
    img = _image()
    a = recipe.apply(img, seed=0, key="k", masks=[np.ones((H, W), bool)])
    assert a.status == "ok" and a.regions == [] and a.mask is None
    assert [o["op"] for o in a.ops] == ["contrast"]
    assert "no region in area range [0.05, 0.5] among 1 candidates" in a.note


def test_fallback_skip_does_no_work():
    recipe = load_recipe({**LOCAL, "global": {"op": "contrast"}, "local": {**LOCAL["local"], "fallback": "skip"}})
    img = _image()
    a = recipe.apply(img, seed=0, key="k", masks=[])
    assert a.status == "skipped" and a.ops == [] and a.regions == [] and "no region" in a.note
    np.testing.assert_array_equal(a.image, img)
    np.testing.assert_array_equal(replay(img, a.record()), img)


def test_local_probability_zero_means_no_regions_no_fallback():
    recipe = load_recipe({**LOCAL, "local": {**LOCAL["local"], "p": 0, "fallback": "skip"}})
    a = recipe.apply(_image(), seed=0, key="k", masks=[])
    assert a.status == "ok" and a.regions == [] and a.note == ""


def test_mask_shape_must_match_image():
    with pytest.raises(ValueError, match=r"masks\[0\] has shape \(4, 4\); it must match the image's \(40, 48\)"):
        load_recipe(LOCAL).apply(_image(), seed=0, key="k", masks=[np.ones((4, 4), bool)])


def test_each_region_draws_its_own_op():
    recipe = load_recipe({"name": "many", "local": {"ops": {"one_of": ["brightness", "contrast", "gaussian_noise"]},
                                                    "regions": [3, 3], "area": [0.0, 1.0], "feather": 2}})
    masks = [_blob(8, 8, 5), _blob(30, 12, 6), _blob(20, 38, 6)]
    drawn = set()
    for i in range(10):
        a = recipe.apply(_image(), seed=1, key=str(i), masks=masks)
        drawn.add(tuple(r["op"] for r in a.regions))
        np.testing.assert_array_equal(replay(_image(), a.record()), a.image)
    assert any(len(set(ops)) > 1 for ops in drawn)


def test_lazy_masks_are_read_only_when_the_local_stage_runs():
    img = np.full((H, W, 3), 60, np.uint8)
    masks = [_blob(12, 14, 7), _blob(28, 34, 8)]
    calls = []

    def lazy():
        calls.append(1)
        return masks

    never = load_recipe({**LOCAL, "local": {**LOCAL["local"], "p": 0.0}})
    assert never.apply(img, seed=0, key="a", masks=lazy).regions == [] and calls == []
    always = load_recipe(LOCAL)
    eager = always.apply(img, seed=0, key="a", masks=masks)
    lazy_run = always.apply(img, seed=0, key="a", masks=lazy)
    assert calls == [1] and np.array_equal(eager.image, lazy_run.image) and eager.regions == lazy_run.regions
