"""validate, stats and rebuild on wrongly typed metadata: one line, exit 2 (or 1 with a report), no traceback."""
import json
import shutil

import pytest

from corruptor.build.builder import BuildConfig, build
from corruptor.cli.main import main
from corruptor.sources.sources import SourceSpec

from .build_fixtures import GLOBAL_RECIPE, make_photos


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("meta")
    make_photos(root / "src", 4)
    build(BuildConfig(recipe=GLOBAL_RECIPE, sources=[SourceSpec("s", str(root / "src"))], out=root / "ds",
                      target=6, shard_size=3))
    return root / "ds"


def edited(dataset, tmp_path, name, edit):
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    doc = json.loads((out / name).read_text())
    edit(doc)
    (out / name).write_text(json.dumps(doc))
    return out


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("edit", [
    lambda d: d.update(shards=5),
    lambda d: d["shards"].__setitem__(0, [1]),
    lambda d: d["shards"][0].update(tar=7),
    lambda d: d.update(counts="x"),
])
def test_validate_on_wrongly_typed_dataset_json(dataset, tmp_path, capsys, edit):
    out = edited(dataset, tmp_path, "dataset.json", edit)
    code = main(["validate", str(out)])
    captured = capsys.readouterr()
    assert code in (1, 2) and "Traceback" not in captured.err
    assert "malformed" in captured.err or "fault" in captured.out


@pytest.mark.parametrize("edit", [
    lambda d: d["plan"].update(items=5),
    lambda d: d["plan"]["sources"][0].update(weight="a"),
    lambda d: d.update(build=[]),
    lambda d: d.pop("plan"),
])
def test_rebuild_on_a_malformed_plan(dataset, tmp_path, capsys, edit):
    out = edited(dataset, tmp_path, "plan.json", edit)
    assert main(["rebuild", str(out), "--recipe", "maa-global", "--out", str(tmp_path / "new")]) == 2
    assert "plan" in one_line_error(capsys)


@pytest.mark.parametrize("damage", ["truncate", "text"])
def test_stats_on_a_damaged_manifest(dataset, tmp_path, capsys, damage):
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    manifest = out / "shards" / "000001.parquet"
    manifest.write_bytes(manifest.read_bytes()[:40] if damage == "truncate" else b"not parquet")
    assert main(["stats", str(out), "--no-plots"]) == 2
    assert "000001.parquet: unreadable manifest" in one_line_error(capsys)
