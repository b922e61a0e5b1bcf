"""Recipes: validation messages, canonical hash, determinism, sampling, provenance replay."""
import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from corruptor.recipe.recipe import (Applied, Recipe, RecipeError, builtin_recipe, builtin_recipes,
                              load_recipe, plan, replay)
from maa_format.rng import rng_for



def _image(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _error(data) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(data)
    assert isinstance(info.value, ValueError)
    return str(info.value)


# ------------------------------------------------------------------ validation

def test_unknown_op_names_path_and_allowed():
    msg = _error({"name": "r", "global": {"one_of": [{"op": "brightness"}, {"op": "contrast"},
                                                     {"op": "gausian_noise"}]}})
    assert "recipe.global.one_of[2].op: unknown op 'gausian_noise'; allowed:" in msg
    assert "gaussian_noise" in msg.split("allowed:")[1]


@pytest.mark.parametrize("severity", [0, 6, 2.5, True, [4, 2], [1, 6], "3"])
def test_severity_out_of_range(severity):
    msg = _error({"name": "r", "global": {"op": "brightness", "severity": severity}})
    assert "recipe.global.severity:" in msg and "1..5" in msg


def test_severity_weights_need_five_non_negative():
    assert "5 numbers" in _error({"name": "r", "global": {"op": "brightness", "severity": {"weights": [1, 2]}}})
    msg = _error({"name": "r", "global": {"op": "brightness", "severity": {"weights": [1, -1, 0, 0, 0]}}})
    assert "recipe.global.severity.weights" in msg


def test_bad_param_key_lists_override_keys():
    from corruptor.ops.registry import get_op

    msg = _error({"name": "r", "local": {"ops": {"chain": [{"op": "brightness", "params": {"nope": 1}}]}}})
    assert "recipe.local.ops.chain[0].params: unknown parameter 'nope' for op 'brightness'" in msg
    assert f"allowed: {', '.join(get_op('brightness').override_keys())}" in msg


def test_bad_param_value_type():
    from corruptor.ops.registry import get_op

    key = get_op("brightness").override_keys()[0]
    msg = _error({"name": "r", "global": {"op": "brightness", "params": {key: "strong"}}})
    assert f"recipe.global.params: parameter '{key}' of op 'brightness' must be a number" in msg


@pytest.mark.parametrize("data, fragment", [
    ({"name": "r", "globl": {"op": "brightness"}},
     "recipe: unknown key 'globl'; allowed: name, description, backend, output, global, local, local_order"),
    ({"name": "r", "global": {"op": "brightness", "sevrity": 2}},
     "recipe.global: unknown key 'sevrity'; allowed: op, p, severity, params, weight"),
    ({"name": "r", "output": {"format": "gif"}}, "recipe.output.format: Input should be 'png', 'jpeg' or 'webp'"),
    ({"name": "r", "backend": "torch"}, "recipe.backend: Input should be 'native' or 'imagecorruptions'"),
    ({"name": "r", "global": {"op": "brightness", "p": 1.5}}, "recipe.global.p: Input should be less than or equal to 1"),
    ({"name": "r", "global": {"chain": [{"opp": "brightness"}]}},
     "recipe.global.chain[0]: a node must be an op name or a mapping with one of the keys 'op', 'chain', 'one_of'"),
    ({"name": "r", "global": {"one_of": []}}, "recipe.global.one_of: List should have at least 1 item"),
    ({"name": "r", "local": {"ops": "brightness", "regions": [3, 1]}},
     "recipe.local.regions: regions must be [min, max] with min <= max"),
    ({"name": "r", "local": {"p": 1}}, "recipe.local.ops: required field is missing"),
    ({"name": "r", "local": {"ops": "brightness", "fallback": "clean"}},
     "recipe.local.fallback: Input should be 'global_only' or 'skip'"),
    ({"name": "r", "backend": "imagecorruptions", "global": {"op": "jpeg"}},
     "recipe.global.op: op 'jpeg' has no imagecorruptions backend; allowed with backend imagecorruptions: gaussian_noise"),
    ({"name": "r", "backend": "imagecorruptions", "global": {"op": "brightness", "params": {"shift": 0.1}}},
     "recipe.global.params: parameter overrides need backend native"),
])
def test_field_errors(data, fragment):
    assert fragment in _error(data)


def test_all_errors_reported_together():
    msg = _error({"name": "r", "global": {"chain": [{"op": "nope"}, {"op": "brightness", "severity": 9}]}})
    assert "chain[0].op" in msg and "chain[1].severity" in msg


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nglobal:\n  op: brightness\n   severity: 2\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: malformed YAML at line 4"):
        load_recipe(path)


def test_top_level_must_be_mapping_and_file_must_exist(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- op: brightness\n")
    with pytest.raises(RecipeError, match="top level must be a mapping with keys name, description"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="recipe file not found: .*missing.yaml; built-in recipes: "):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="unknown built-in recipe 'no-such'; allowed: .*maa-paper"):
        load_recipe("no-such")


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my-recipe.yaml"
    path.write_text("global: {op: brightness}\n")
    assert load_recipe(path).name == "my-recipe"


# ------------------------------------------------------------------ canonical form and hash

def test_hash_ignores_layout_defaults_and_naming(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(textwrap.dedent("""\
        # comments and key order do not matter
        global:
          severity: 3
          op: brightness
        name: a
        """))
    explicit = {"name": "b", "description": "other words", "backend": "native", "local": None,
                "global": {"op": "brightness", "p": 1, "severity": 3, "params": {}, "weight": 1}}
    a, b = load_recipe(path), load_recipe(explicit)
    assert a.hash == b.hash and len(a.hash) == 16
    assert load_recipe({"name": "s", "global": "brightness"}).hash == a.hash  # op-name shorthand


def test_hash_changes_with_content():
    base = {"name": "r", "global": {"op": "brightness", "severity": 3}}
    hashes = {load_recipe(base).hash}
    for change in ({"severity": 4}, {"p": 0.5}, {"severity": [1, 3]}, {"op": "contrast"}):
        hashes.add(load_recipe({"name": "r", "global": {**base["global"], **change}}).hash)
    hashes.add(load_recipe({**base, "output": {"size": 256}}).hash)
    assert len(hashes) == 6


def test_to_dict_round_trips():
    r = load_recipe({"name": "r", "global": {"one_of": [{"op": "brightness", "severity": {"weights": [1, 0, 0, 0, 1]}},
                                                        {"op": "contrast", "severity": [2, 4], "weight": 3}]},
                     "local": {"ops": "gaussian_noise", "area": [0.1, 0.4]}, "local_order": "before"})
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["global"]["one_of"][1]["severity"] == [2, 4] and d["local"]["feather"] == 8.0
    again = load_recipe(d)
    assert again == r and again.hash == r.hash and r.needs_masks


# ------------------------------------------------------------------ application

MIXED = {"name": "mixed", "global": {"chain": [
    {"one_of": [{"op": "gaussian_noise", "severity": [1, 5]}, {"op": "contrast", "severity": [1, 5]}]},
    {"op": "brightness", "p": 0.5, "severity": {"weights": [1, 1, 1, 0, 0]}}]}}


def test_same_inputs_same_bytes_other_key_differs():
    r, img = load_recipe(MIXED), _image()
    a, b = r.apply(img, seed=3, key="k1"), r.apply(img, seed=3, key="k1")
    np.testing.assert_array_equal(a.image, b.image)
    assert a.ops == b.ops and a.ops
    outs = {r.apply(img, seed=3, key=f"k{i}").image.tobytes() for i in range(8)}
    assert len(outs) > 1


def _digest_code(recipe: dict) -> str:
    return textwrap.dedent(f"""
        import hashlib, numpy as np
        from corruptor.recipe.recipe import load_recipe
        img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        r = load_recipe({recipe!r})
        print(r.hash, hashlib.sha256(b"".join(r.apply(img, seed=9, key=f"s{{i}}").image.tobytes() for i in range(4))).hexdigest())
        """)


def _backend_recipes():
    yield MIXED
    try:
        import corruptor.ops.imagecorruptions_compat  # noqa: F401
    except ImportError:
        return
    yield {"name": "ic", "backend": "imagecorruptions",
           "global": {"one_of": [{"op": "gaussian_noise", "severity": [1, 5]}, {"op": "contrast"}]}}


@pytest.mark.parametrize("recipe", list(_backend_recipes()), ids=lambda r: r["name"])
def test_byte_identical_in_a_fresh_process(recipe):
    """Output bytes and recipe hash match a new interpreter (fresh hash seed, fresh imports)."""
    out = subprocess.run([sys.executable, "-c", _digest_code(recipe)], capture_output=True, text=True, check=True)
    r, img = load_recipe(recipe), _image()
    here = hashlib.sha256(b"".join(r.apply(img, seed=9, key=f"s{i}").image.tobytes() for i in range(4))).hexdigest()
    assert out.stdout.split() == [r.hash, here]


def test_one_of_weights_respected():
    r = load_recipe({"name": "w", "global": {"one_of": [{"op": "brightness", "weight": 3},
                                                        {"op": "contrast", "weight": 1}]}})
    img = _image(2, 2)
    picks = [r.apply(img, seed=0, key=str(i)).ops[0]["op"] for i in range(1200)]
    frac = picks.count("brightness") / len(picks)
    assert abs(frac - 0.75) < 0.05


def test_probability_zero_never_one_always():
    img = _image(4, 4)
    never = load_recipe({"name": "p0", "global": {"op": "brightness", "p": 0}})
    always = load_recipe({"name": "p1", "global": {"op": "brightness", "p": 1}})
    for i in range(200):
        a = never.apply(img, seed=1, key=str(i))
        assert a.ops == [] and a.status == "ok"
        np.testing.assert_array_equal(a.image, img)
        assert len(always.apply(img, seed=1, key=str(i)).ops) == 1
    half = load_recipe({"name": "p", "global": {"op": "brightness", "p": 0.3}})
    rate = np.mean([bool(half.apply(img, seed=1, key=str(i)).ops) for i in range(1000)])
    assert abs(rate - 0.3) < 0.05


def test_severity_forms_draw_inside_their_support():
    node = load_recipe({"name": "s", "global": {"chain": [
        {"op": "brightness", "severity": [2, 4]},
        {"op": "contrast", "severity": {"weights": [0, 0, 0, 1, 0]}},
        {"op": "brightness", "severity": 5}]}}).global_
    seen = set()
    for i in range(300):
        (_, lv_range, _), (_, lv_weights, _), (_, lv_fixed, _) = plan(node, rng_for(0, str(i)))
        seen.add(lv_range)
        assert (lv_weights, lv_fixed) == (4, 5)
    assert seen == {2, 3, 4}


def test_overrides_merge_over_sampled_params():
    from corruptor.ops.registry import get_op

    key = get_op("brightness").override_keys()[0]
    sampled = get_op("brightness").params(np.random.default_rng(0), 2, (8, 8))[key]
    value = sampled / 2 if isinstance(sampled, float) else sampled
    r = load_recipe({"name": "o", "global": {"op": "brightness", "severity": 2, "params": {key: value}}})
    a = r.apply(_image(), seed=0, key="x")
    assert a.ops[0]["params"][key] == value and a.ops[0]["backend"] == "native"


def test_identity_recipe_keeps_image():
    img = _image()
    a = load_recipe({"name": "identity"}).apply(img, seed=0, key="k")
    assert a.ops == [] and a.regions == [] and a.mask is None and a.status == "ok"
    np.testing.assert_array_equal(a.image, img)


@pytest.mark.parametrize("image", [
    np.full((9, 7), 90, np.uint8),                                  # grayscale
    np.full((9, 7, 4), 200, np.uint8),                              # RGBA
    np.full((9, 7, 3), 40000, np.uint16),                           # 16-bit
    np.full((1, 1, 3), 0.5, np.float32),                            # float, 1x1
])
def test_odd_inputs_become_rgb_uint8(image):
    a = load_recipe(MIXED).apply(image, seed=0, key="x")
    assert a.image.dtype == np.uint8 and a.image.shape == image.shape[:2] + (3,)


@pytest.mark.parametrize("order", ["after", "before"])
def test_provenance_replays_from_json(order):
    r = load_recipe({"name": "rp", "local_order": order,
                     "global": {"chain": [{"op": "gaussian_noise", "severity": [1, 5]}, {"op": "contrast", "p": 0.5}]},
                     "local": {"ops": {"one_of": ["brightness", "contrast", "gaussian_noise"]},
                               "regions": [1, 2], "area": [0.05, 0.6], "feather": 4}})
    img = _image(32, 40)
    masks = [np.zeros((32, 40), bool) for _ in range(3)]
    masks[0][2:14, 3:20] = True
    masks[1][16:30, 10:38] = True
    masks[2][:, 30:] = True
    for i in range(6):
        applied = r.apply(img, seed=5, key=f"r{i}", masks=masks)
        assert applied.regions and applied.ops
        record = json.loads(json.dumps(applied.record()))
        np.testing.assert_array_equal(replay(img, record), applied.image)


def test_local_recipe_requires_masks_argument():
    r = load_recipe({"name": "l", "local": {"ops": "brightness"}})
    with pytest.raises(ValueError, match="has a local stage: pass masks="):
        r.apply(_image(), seed=0, key="k")


def test_applied_is_a_dataclass_with_provenance():
    a = load_recipe(MIXED).apply(_image(), seed=0, key="x")
    assert isinstance(a, Applied) and set(a.ops[0]) == {"op", "severity", "params", "backend"}
    assert set(a.record()) == {"ops", "regions", "status", "note", "local_order"}


# ------------------------------------------------------------------ shipped recipes

@pytest.mark.parametrize("name", ["imagenet-c", "realesrgan", "maa-global", "maa-local", "maa-paper"])
def test_shipped_recipes_load_and_apply(name):
    assert name in builtin_recipes()
    recipe = builtin_recipe(name)
    assert isinstance(recipe, Recipe) and load_recipe(name).hash == recipe.hash
    img = _image(40, 48)
    mask = np.zeros((40, 48), bool)
    mask[5:25, 8:30] = True
    applied = recipe.apply(img, seed=0, key="k", masks=[mask] if recipe.needs_masks else None)
    assert applied.image.shape == img.shape and applied.status in ("ok", "skipped")
