"""Builds with a recipe that gives source kinds their own stages (``recipe.kinds``)."""
import json

import pytest
import webdataset as wds

from corruptor.build.builder import BuildConfig, build
from corruptor.build.validate import validate
from corruptor.sources.sources import SourceSpec

from .build_fixtures import GLOBAL_RECIPE, MASKS, dataset_bytes, make_photos

DOC_OPS = ("halftone", "stroke_blur", "scan_low_contrast")
PHOTO_OPS = ("gaussian_noise", "jpeg")   # GLOBAL_RECIPE's global stage
KINDS_RECIPE = {
    **GLOBAL_RECIPE, "name": "test-kinds",
    "kinds": {
        "ocr": {"global": {"one_of": [{"op": op, "severity": [1, 5]} for op in DOC_OPS]}},
        "photo": {"local": {"p": 1.0, "regions": [1, 2], "area": [0.01, 0.7], "ops": {"op": "low_light", "severity": 4}}},
        "web": {"global": "pixelate"},   # no source of this kind: fine
    },
}
# Provenance keys of a recipe without kinds, as before kinds existed.
PLAIN_KEYS = {"key", "source", "source_path", "source_sha256", "source_size", "recipe_hash", "seed", "decode_notes",
              "variant", "crop", "crop_box", "scaled_size", "paired", "ops", "regions"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    make_photos(root / "cam", 5, seed=3)
    make_photos(root / "docs", 5, seed=4)
    return root


def _sources(images):
    return [SourceSpec("cam", str(images / "cam"), kind="photo"), SourceSpec("docs", str(images / "docs"), kind="ocr")]


def _build(images, out, recipe, **kw):
    cfg = dict(recipe=recipe, sources=_sources(images), out=out, target=12, shard_size=5, seed=11)
    cfg.update(kw)
    report = build(BuildConfig(**cfg))
    assert report.ok == 12 and validate(out).ok
    return out


def _samples(out):
    tars = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False)}


def test_each_source_kind_gets_its_own_stages_recorded_in_provenance(images, tmp_path):
    out = _build(images, tmp_path / "ds", KINDS_RECIPE, mask_source=MASKS)
    samples = _samples(out)
    by_kind = {"photo": [], "ocr": []}
    for s in samples.values():
        prov = json.loads(s["json"])
        by_kind[prov["source_kind"]].append((prov, s))
    assert len(by_kind["photo"]) == len(by_kind["ocr"]) == 6
    for prov, s in by_kind["photo"]:
        assert prov["source"] == "cam" and prov["stage_set"] == "photo"
        assert prov["stages"] == {"global": "recipe.global", "local": "recipe.kinds.photo.local"}
        assert [op["op"] for op in prov["ops"]][0] in PHOTO_OPS
        assert prov["regions"] and {op["op"] for r in prov["regions"] for op in r["ops"]} == {"low_light"}
        assert "mask.png" in s
    for prov, s in by_kind["ocr"]:
        assert prov["source"] == "docs" and prov["stage_set"] == "ocr"
        assert prov["stages"] == {"global": "recipe.kinds.ocr.global", "local": None}
        assert [op["op"] for op in prov["ops"]][0] in DOC_OPS
        assert prov["regions"] == [] and "mask.png" not in s
    ds = json.loads((out / "dataset.json").read_text())
    assert set(ds["recipe"]["kinds"]) == {"ocr", "photo", "web"}


def test_source_kind_flag_picks_the_stage_set(images, tmp_path):
    from corruptor.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({k: v for k, v in KINDS_RECIPE.items() if k != "kinds"}
                                 | {"kinds": {"ocr": KINDS_RECIPE["kinds"]["ocr"]}}))  # JSON is YAML
    args = ["build", "--recipe", str(recipe), "--target", "6", "--out", str(tmp_path / "ds"),
            "--source", f"cam={images / 'cam'}", "--source", f"docs={images / 'docs'}"]
    assert main(args + ["--source-kind", "docs=ocr"]) == 0
    kinds = {json.loads(s["json"])["source"]: json.loads(s["json"])["source_kind"]
             for s in _samples(tmp_path / "ds").values()}
    assert kinds == {"cam": "photo", "docs": "ocr"}


def test_recipe_without_kinds_builds_exactly_as_before(images, tmp_path):
    plain = _build(images, tmp_path / "plain", GLOBAL_RECIPE)
    empty = _build(images, tmp_path / "empty", {**GLOBAL_RECIPE, "kinds": {}})
    assert dataset_bytes(plain) == dataset_bytes(empty)
    for s in _samples(plain).values():
        assert set(json.loads(s["json"])) == PLAIN_KEYS   # no source_kind: shards stay byte-identical


def test_a_kinds_entry_for_documents_leaves_photo_samples_unchanged(images, tmp_path):
    plain = _samples(_build(images, tmp_path / "plain", GLOBAL_RECIPE))
    ocr_only = {**GLOBAL_RECIPE, "kinds": {"ocr": KINDS_RECIPE["kinds"]["ocr"]}}
    kinds = _samples(_build(images, tmp_path / "kinds", ocr_only))
    assert plain.keys() == kinds.keys()
    changed = 0
    for key, s in kinds.items():
        prov = json.loads(s["json"])
        if prov["source_kind"] == "photo":
            assert s["clean.png"] == plain[key]["clean.png"] and s["degraded.png"] == plain[key]["degraded.png"]
            assert prov["ops"] == json.loads(plain[key]["json"])["ops"] and prov["stage_set"] == "default"
        else:
            assert s["clean.png"] == plain[key]["clean.png"]
            changed += s["degraded.png"] != plain[key]["degraded.png"]
    assert changed > 0
