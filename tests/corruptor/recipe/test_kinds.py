"""Per-source-kind stages (``recipe.kinds``): schema, validation, hash and application."""
import numpy as np
import pytest

from corruptor.recipe.recipe import RecipeError, builtin_recipe, builtin_recipes, load_recipe
from corruptor.sources.sources import KINDS

BASE = {"name": "r", "global": {"one_of": ["gaussian_noise", "jpeg"]},
        "local": {"ops": "pixelate", "area": [0.01, 0.9]}}
OCR_GLOBAL = {"one_of": [{"op": "halftone", "severity": [1, 5]}, {"op": "stroke_blur", "severity": [1, 5]}]}
WITH_KINDS = {**BASE, "kinds": {"ocr": {"global": OCR_GLOBAL}, "photo": {"local": {"ops": "low_light"}},
                                "web": {"local": None}}}

# Hashes of recipes without a kinds section, as computed before kinds existed: they must not move.
HASHES_BEFORE_KINDS = {"imagenet-c": "fcf7ae22bea2c84a", "maa-global": "02460c3f60365429",
                       "maa-local": "b1a927283b5fe164", "realesrgan": "977d09cdb9891b42"}


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _error(data) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(data)
    return str(info.value)


@pytest.mark.parametrize("kinds, fragment", [
    ({"ocr": {"global": {"one_of": ["halftone", {"op": "nope"}]}}},
     "recipe.kinds.ocr.global.one_of[1].op: unknown op 'nope'; allowed: "),
    ({"scan": {"global": "halftone"}},
     "recipe.kinds: unknown source kind 'scan'; allowed: " + ", ".join(KINDS)),
    ({"ocr": {}}, "recipe.kinds.ocr: give the stage(s) this kind replaces: global and/or local"),
    ({"ocr": {"globl": "halftone"}}, "recipe.kinds.ocr: unknown key 'globl'; allowed: global, local"),
    ({"photo": {"local": {"ops": "pixelate", "regions": [3, 1]}}},
     "recipe.kinds.photo.local.regions: regions must be [min, max] with min <= max"),
    ({"photo": {"local": {"p": 1}}}, "recipe.kinds.photo.local.ops: required field is missing"),
])
def test_kinds_errors_name_the_field(kinds, fragment):
    assert fragment in _error({**BASE, "kinds": kinds})


def test_kinds_ops_follow_the_backend():
    msg = _error({"name": "r", "backend": "imagecorruptions", "global": "gaussian_noise",
                  "kinds": {"ocr": {"global": "halftone"}}})
    assert "recipe.kinds.ocr.global.op: op 'halftone' has no imagecorruptions backend" in msg


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE_KINDS))
def test_recipes_without_kinds_keep_their_hash(name):
    recipe = builtin_recipe(name)
    assert recipe.kinds is None and "kinds" not in recipe.to_dict()
    assert recipe.hash == HASHES_BEFORE_KINDS[name]
    assert load_recipe({**recipe.to_dict(), "kinds": {}}).hash == recipe.hash  # empty section: no section


def test_hash_covers_kinds():
    hashes = {load_recipe(BASE).hash, load_recipe(WITH_KINDS).hash}
    for kinds in ({"ocr": {"global": "halftone"}}, {"ocr": {"global": {"op": "halftone", "severity": 2}}},
                  {"ocr": {"local": None}}, {"ocr": {"global": None}}, {"web": {"global": "halftone"}}):
        hashes.add(load_recipe({**BASE, "kinds": kinds}).hash)
    assert len(hashes) == 7


def test_to_dict_keeps_unset_apart_from_null_and_round_trips():
    r = load_recipe(WITH_KINDS)
    d = r.to_dict()
    assert set(d["kinds"]["ocr"]) == {"global"} and d["kinds"]["web"] == {"local": None}
    assert d["kinds"]["ocr"]["global"]["one_of"][0]["p"] == 1.0  # defaults filled in
    again = load_recipe(d)
    assert again.to_dict() == d and again.hash == r.hash


def test_stage_paths_and_sets():
    r = load_recipe(WITH_KINDS)
    assert r.stage_paths("ocr") == {"global": "recipe.kinds.ocr.global", "local": "recipe.local"}
    assert r.stage_paths("photo") == {"global": "recipe.global", "local": "recipe.kinds.photo.local"}
    assert r.stage_paths("web") == {"global": "recipe.global", "local": None}
    assert r.stage_paths(None) == {"global": "recipe.global", "local": "recipe.local"}
    assert [r.stage_set(k) for k in ("ocr", "photo", "web", None)] == ["ocr", "photo", "web", "default"]
    assert r.needs_masks and not r.needs_masks_for("web")
    only_photo = load_recipe({"name": "p", "global": "jpeg", "kinds": {"photo": {"local": {"ops": "pixelate"}}}})
    assert only_photo.needs_masks and only_photo.needs_masks_for("photo") and not only_photo.needs_masks_for("ocr")


def test_each_kind_gets_its_own_ops():
    r = load_recipe(WITH_KINDS)
    quarter = np.zeros((32, 32), bool)
    quarter[:16, :16] = True  # inside every local stage's area range
    everything = [quarter]
    for seed in range(8):
        ocr = r.apply(_image(seed), seed=seed, key="k", masks=everything, kind="ocr")
        assert ocr.ops[0]["op"] in ("halftone", "stroke_blur")
        assert {op["op"] for reg in ocr.regions for op in reg["ops"]} <= {"pixelate"}
        photo = r.apply(_image(seed), seed=seed, key="k", masks=everything, kind="photo")
        assert photo.ops[0]["op"] in ("gaussian_noise", "jpeg")
        assert {op["op"] for reg in photo.regions for op in reg["ops"]} == {"low_light"}
        web = r.apply(_image(seed), seed=seed, key="k", masks=everything, kind="web")
        assert web.regions == [] and web.mask is None


def test_a_kind_the_recipe_does_not_name_gets_the_plain_recipe():
    plain, kinds = load_recipe(BASE), load_recipe({**BASE, "kinds": {"ocr": {"global": OCR_GLOBAL}}})
    masks = [np.ones((32, 32), bool)]
    want = plain.apply(_image(), seed=3, key="k", masks=masks)
    for recipe, kind in ((kinds, "photo"), (kinds, None), (plain, "ocr"), (plain, "photo")):
        got = recipe.apply(_image(), seed=3, key="k", masks=masks, kind=kind)
        assert np.array_equal(got.image, want.image) and got.ops == want.ops
    with pytest.raises(ValueError, match="source kind 'scan' not allowed; allowed: photo, web, ocr"):
        plain.apply(_image(), seed=3, key="k", masks=masks, kind="scan")


def test_maa_paper_gives_documents_their_own_global_stage():
    r = builtin_recipe("maa-paper")
    assert "maa-paper" in builtin_recipes() and set(r.kinds) == {"ocr"}
    assert r.stage_paths("ocr") == {"global": "recipe.kinds.ocr.global", "local": "recipe.local"}
    assert r.stage_paths("photo") == {"global": "recipe.global", "local": "recipe.local"}
    ocr_ops = {node.op for path, node in r.op_nodes() if path.startswith("recipe.kinds.ocr.global")}
    assert {"scan_low_contrast", "halftone", "stroke_blur"} <= ocr_ops
