"""A dataset's own files cannot make validate, stats or rebuild read (or link) anything outside it.

One small dataset is built (a folder source, a list source, local ops so ``masks/`` exists);
each test copies it, plants one hostile or wrongly typed entry and checks the refusal: a clear
error naming the file and field, nothing read from outside, nothing written.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from corruptor.build import worker
from corruptor.build.builder import BuildConfig, BuildError, build, rebuild
from corruptor.cli.main import main as cli
from corruptor.sources.sources import SourceSpec
from corruptor.build.validate import validate

from .build_fixtures import LOCAL_RECIPE, MASKS, OTHER_RECIPE, make_photos


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The built dataset, its source folders, and files outside all of them."""
    root = tmp_path_factory.mktemp("world")
    make_photos(root / "src" / "a", 4, seed=1)
    listed = make_photos(root / "listed", 3, seed=2, sub=False)
    (root / "list.txt").write_text("\n".join(str(p) for p in listed[:2]) + "\n")
    make_photos(root / "outside", 1, seed=3, sub=False)
    (root / "src" / "a" / "notes.txt").write_text("not an image")
    (root / "private").write_text("secret")
    worker._mask_cache.cache_clear()
    sources = [SourceSpec("alpha", str(root / "src" / "a")), SourceSpec("lst", str(root / "list.txt"))]
    build(BuildConfig(recipe=LOCAL_RECIPE, mask_source=MASKS, out=root / "built", target=6, shard_size=3, seed=1,
                      sources=sources))
    assert validate(root / "built").ok and any((root / "built" / "masks").rglob("*.parquet"))
    return root


@pytest.fixture
def ds(world, tmp_path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(world / "built", out, symlinks=True)
    return out


def edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# --- validate -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, says", [
    ("tar", "ABS", r"shards\[0\]\.tar: path '/.*' is absolute"),
    ("tar", "../outside/000000.tar", r"shards\[0\]\.tar: path '\.\./outside/000000\.tar' contains '\.\.'"),
    ("manifest", "ABS", r"shards\[0\]\.manifest: path '/.*' is absolute"),
])
def test_validate_refuses_shard_paths_outside_the_dataset(ds, tmp_path, field, value, says):
    outside = tmp_path / "outside"
    shutil.copytree(ds / "shards", outside)  # valid shards: following the path would pass validation
    source = "000000.tar" if field == "tar" else "000000.parquet"
    target = str(outside / source) if value == "ABS" else value
    edit(ds / "dataset.json", lambda d: d["shards"][0].update({field: target}))
    report = validate(ds)
    assert not report.ok and any(re.search(says, e) for e in report.errors), report.errors


def test_validate_refuses_a_shard_name_that_climbs(ds):
    edit(ds / "dataset.json", lambda d: d["shards"][0].update(name="../../etc/x"))
    report = validate(ds)
    assert report.errors == [f"dataset.json unreadable: {ds / 'dataset.json'}: shards[0].name: shard name "
                             "'../../etc/x' must be one file-name component (letters, digits, '_', '-', '.')"]


@pytest.mark.parametrize("name", ["000000.tar", "000000.stats.json", "000000.parquet"])
def test_validate_refuses_links_out_but_not_links_inside(ds, tmp_path, name):
    shard = ds / "shards" / name
    outside = tmp_path / name
    shutil.copy(shard, outside)
    shard.unlink()
    os.symlink(outside, shard)
    report = validate(ds)
    assert not report.ok and any("leads out of" in e and "symbolic link" in e for e in report.errors), report.errors
    (ds / "store").mkdir()
    shutil.move(outside, ds / "store" / name)
    shard.unlink()
    os.symlink(ds / "store" / name, shard)
    assert validate(ds).ok


def test_validate_reports_wrongly_typed_files_in_one_line(ds, capsys):
    edit(ds / "dataset.json", lambda d: d["shards"][1].update(tar=5))
    assert cli(["validate", str(ds)]) == 1
    out = capsys.readouterr().out
    assert "Traceback" not in out and "shards[1].tar: expected a string, got int" in out
    edit(ds / "dataset.json", lambda d: d["shards"][1].update(tar="shards/000001.tar"))
    edit(ds / "shards" / "000000.stats.json", lambda d: d.update(ok="3"))
    report = validate(ds)
    assert "000000.stats.json is unreadable" in report.errors[0]
    assert "ok: expected an integer, got str" in report.errors[0]


def test_stats_refuses_a_manifest_linked_from_outside(ds, tmp_path, capsys):
    outside = tmp_path / "private.parquet"
    shutil.move(ds / "shards" / "000001.parquet", outside)
    os.symlink(outside, ds / "shards" / "000001.parquet")
    assert cli(["stats", str(ds), "--no-plots"]) == 2
    assert "leads out of" in one_line(capsys.readouterr().err)


# --- rebuild ------------------------------------------------------------------------------------


def _item(ds: Path, source: str) -> int:
    items = json.loads((ds / "plan.json").read_text())["plan"]["items"]
    return next(i for i, it in enumerate(items) if it["source"] == source)


def _set_locator(ds: Path, source: str, locator: list) -> int:
    i = _item(ds, source)
    edit(ds / "plan.json", lambda d: d["plan"]["items"][i].update(locator=locator))
    return i


@pytest.mark.parametrize("where, says", [
    ("outside", "is not inside"),
    ("climb", "is not inside"),
    ("notes", "is not an image file name"),
])
def test_rebuild_reads_only_inside_declared_folder_sources(ds, world, tmp_path, where, says):
    src = world / "src" / "a"
    path = {"outside": str(world / "outside" / "img000.png"), "climb": f"{src}/../../outside/img000.png",
            "notes": str(src / "notes.txt")}[where]
    i = _set_locator(ds, "alpha", ["file", path])
    with pytest.raises(BuildError, match=rf"plan\.json: plan\.items\[{i}\]\.locator: file .* {says}"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_rebuild_reads_only_files_a_list_source_names(ds, world, tmp_path):
    i = _set_locator(ds, "lst", ["file", str(world / "listed" / "img002.png")])  # in the folder, not in the list
    with pytest.raises(BuildError, match=rf"plan\.items\[{i}\]\.locator: file .* is not one of the files the list"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")


def test_rebuild_refuses_a_locator_of_another_type(ds, tmp_path):
    _set_locator(ds, "alpha", ["tar", str(ds / "shards" / "000000.tar"), 0, 512])
    with pytest.raises(BuildError, match="a tar locator in a folder source"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")


def test_rebuild_refuses_a_refused_locator_outside_a_tar_source(ds, tmp_path):
    # "refused" (a tar member that is a link or device: a row, never read) belongs to tar sources only
    _set_locator(ds, "alpha", ["refused", "tar member is a symbolic link, not read"])
    with pytest.raises(BuildError, match="a refused locator in a folder source"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")


@pytest.mark.parametrize("locator, says", [
    (["refused"], r"a refused locator has 1 argument\(s\) \(reason\), got 0"),
    (["refused", 7], r"locator\[1\]: expected a string, got int"),
    (["pdf", "/x.pdf", 0, 100], r"a pdf locator has 4 argument\(s\)"),
])
def test_plan_schema_checks_refused_and_pdf_locators(ds, tmp_path, locator, says):
    _set_locator(ds, "alpha", locator)
    with pytest.raises(BuildError, match=says):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")


@pytest.mark.parametrize("value, ok", [(0.2, True), ("lots", False), (1.5, False)])
def test_dataset_json_max_failed_is_a_fraction(ds, value, ok):
    edit(ds / "dataset.json", lambda d: d.update(max_failed=value))
    report = validate(ds)
    assert report.ok == ok
    if not ok:
        assert any("max_failed" in e for e in report.errors), report.errors


def test_rebuild_refuses_sources_that_differ_from_dataset_json(ds, tmp_path):
    edit(ds / "plan.json", lambda d: d["plan"]["sources"][0].update(path="/"))
    with pytest.raises(BuildError, match="plan.sources: differ from the sources dataset.json records"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")


@pytest.mark.parametrize("change, says", [
    (lambda d: d["plan"]["items"][0].update(locator="x"), r"plan\.items\[0\]\.locator: expected a list, got str"),
    (lambda d: d["plan"]["shards"][0][0].__setitem__(1, 999), r"plan\.shards\[0\]\[0\]\[1\]: expected an integer in"),
    (lambda d: d["plan"]["items"][0].update(locator=["exec", "rm -rf"]), r"locator type 'exec' is not one of"),
    (lambda d: d["plan"].pop("items"), r"plan\.items: missing"),
    (lambda d: d["plan"]["sources"][0].update(weight="heavy"), r"plan\.sources\[0\]\.weight: expected a finite number"),
])
def test_rebuild_names_the_wrongly_typed_plan_field(ds, tmp_path, change, says):
    edit(ds / "plan.json", change)
    with pytest.raises(BuildError, match=says):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")


def test_rebuild_cli_exits_2_with_one_line(ds, world, tmp_path, capsys):
    _set_locator(ds, "alpha", ["file", str(world / "outside" / "img000.png")])
    recipe = tmp_path / "other.json"
    recipe.write_text(json.dumps(OTHER_RECIPE))  # JSON is YAML
    assert cli(["rebuild", str(ds), "--recipe", str(recipe), "--out", str(tmp_path / "new")]) == 2
    assert "is not inside" in one_line(capsys.readouterr().err)


def test_rebuild_never_links_a_planted_mask_symlink(ds, world, tmp_path):
    entry = sorted((ds / "masks").rglob("*.parquet"))[0]
    entry.unlink()
    os.symlink(world / "private", entry)
    with pytest.raises(BuildError, match="is a symbolic link; a mask cache holds regular files only"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", trust_plan_paths=True)
    assert os.stat(world / "private").st_nlink == 1
    assert not (tmp_path / "new").exists() or not [p for p in (tmp_path / "new").rglob("*") if p.is_file()]


def test_rebuild_refuses_a_masks_folder_linked_from_outside(ds, world, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(ds / "masks", outside)
    os.symlink(outside, ds / "masks")
    with pytest.raises(BuildError, match="masks is a symbolic link"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", trust_plan_paths=True)


def test_untouched_copy_still_rebuilds(ds, tmp_path):
    worker._mask_cache.cache_clear()
    report = rebuild(ds, OTHER_RECIPE, tmp_path / "new", trust_plan_paths=True)
    assert report.rows == 6 and validate(tmp_path / "new").ok
    assert any(os.path.samefile(p, ds / p.relative_to(tmp_path / "new"))
               for p in (tmp_path / "new" / "masks").rglob("*.parquet"))


def _retarget(ds: Path, name: str, path: str) -> None:
    """A hostile copy: the plan and dataset.json declare source ``name`` at ``path`` (items moved along)."""
    for file in ("plan.json", "dataset.json"):
        def change(d, file=file):
            sources = d["plan"]["sources"] if file == "plan.json" else d["sources"]
            old = next(s for s in sources if s["name"] == name)
            if file == "plan.json":
                for it in d["plan"]["items"]:
                    if it["source"] == name:
                        it["locator"][1] = it["locator"][1].replace(old["path"], path)
            old["path"] = path
        edit(ds / file, change)


def test_rebuild_reads_a_plans_sources_only_when_the_user_restates_them(ds, world, tmp_path, capsys):
    alpha, lst = str(world / "src" / "a"), str(world / "list.txt")
    with pytest.raises(BuildError, match=rf"reads source 'alpha' from {alpha}; restate it with "
                                         rf"--source alpha={alpha} \(or pass --trust-plan-paths\)"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(BuildError, match=rf"--source alpha={world}: .* records source 'alpha' at {alpha}"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", sources=[SourceSpec("alpha", str(world)),
                                                              SourceSpec("lst", lst)])
    with pytest.raises(BuildError, match="--source extra: .* declares no source of that name"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", sources=[SourceSpec("extra", lst)])
    worker._mask_cache.cache_clear()
    args = ["rebuild", str(ds), "--recipe", "maa-global", "--out", str(tmp_path / "new"), "--no-progress"]
    assert cli(args) == 2 and "--trust-plan-paths" in one_line(capsys.readouterr().err)
    assert cli(args + ["--source", f"alpha={alpha}", "--source", f"lst={lst}"]) == 0
    assert validate(tmp_path / "new").ok


def test_a_hostile_plan_pointing_at_a_private_folder_is_refused_unless_trusted(ds, world, tmp_path):
    """The plan's locators stay inside its declared source, so only the user's word stops this."""
    _retarget(ds, "alpha", str(world / "outside"))
    edit(ds / "plan.json", lambda d: [it["locator"].__setitem__(1, str(world / "outside" / "img000.png"))
                                      for it in d["plan"]["items"] if it["source"] == "alpha"])
    with pytest.raises(BuildError, match=rf"reads source 'alpha' from {world / 'outside'}"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", sources=[SourceSpec("lst", str(world / "list.txt"))])


def test_rebuild_asks_for_the_files_the_plans_mask_settings_read(ds, world, tmp_path):
    masks = world / "masks.json"
    edit(ds / "plan.json", lambda d: d["build"]["mask_source"].update(precomputed_path=str(masks)))
    restated = [SourceSpec("alpha", str(world / "src" / "a")), SourceSpec("lst", str(world / "list.txt"))]
    with pytest.raises(BuildError, match=rf"mask settings read {masks} on a mask-cache miss; confirm it with "
                                         rf"--precomputed-masks {masks}"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", sources=restated)
    with pytest.raises(BuildError, match="confirm it with --precomputed-masks"):
        rebuild(ds, OTHER_RECIPE, tmp_path / "new", sources=restated,
                mask_inputs={"--precomputed-masks": str(world / "other.json")})


def test_validate_refuses_members_a_stock_decoder_would_unpickle(ds):
    import io
    import tarfile

    tar = ds / "shards" / "000000.tar"
    with tarfile.open(tar) as tf:
        key = tf.getnames()[0].split(".", 1)[0]
    data = bytes(open(tar, "rb").read())
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(tar, "w") as out:
        for member in src:
            out.addfile(member, src.extractfile(member))
            if member.name == f"{key}.json":  # right after the sample's own members
                extra = tarfile.TarInfo(f"{key}.pyd")
                extra.size = 4
                out.addfile(extra, io.BytesIO(b"\x80\x04N."))
    report = validate(ds)
    assert f"000000.tar: sample {key} has member .pyd, which the format does not define" in "\n".join(report.errors)
