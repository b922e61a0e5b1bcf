import io
import json
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from corruptor.build.builder import BuildConfig, build
from corruptor.cli.main import main
from corruptor.sources.sources import SourceSpec
from corruptor.build.stats import collect, format_table, plot
from corruptor.build.validate import validate

from .build_fixtures import LOCAL_RECIPE, MASKS, make_photos


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    make_photos(root / "src", 5)
    (root / "src" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    build(BuildConfig(recipe=LOCAL_RECIPE, sources=[SourceSpec("s", str(root / "src"))], out=root / "ds",
                      target=12, shard_size=5, mask_source=MASKS, max_failed=0.5))  # broken.jpg fails on purpose
    return root / "ds"


@pytest.fixture
def copy(dataset, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    return out


def rewrite_tar(path, keep):
    """Re-pack a shard keeping the members ``keep(name)`` accepts, optionally replacing data."""
    with tarfile.open(path) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(path, "w") as tf:
        for m, data in members:
            out = keep(m.name, data)
            if out is not None:
                m.size = len(out)
                tf.addfile(m, io.BytesIO(out))


def test_a_fresh_build_validates_and_the_cli_agrees(dataset, capsys):
    report = validate(dataset)
    assert report.ok, report.format()
    assert report.samples == json.loads((dataset / "dataset.json").read_text())["counts"]["pairs"]
    assert main(["validate", str(dataset)]) == 0
    assert "OK" in capsys.readouterr().out


def test_truncated_tar_is_caught(copy, capsys):
    tar = copy / "shards" / "000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    report = validate(copy)
    assert not report.ok
    assert any("000001" in e and ("truncated" in e or "unreadable" in e or "missing from the tar" in e)
               for e in report.errors), report.errors
    assert main(["validate", str(copy)]) == 1
    assert "fault" in capsys.readouterr().out


def test_missing_sample_is_caught(copy):
    tar = copy / "shards" / "000000.tar"
    with tarfile.open(tar) as tf:
        victim = tf.getnames()[0].split(".", 1)[0]
    rewrite_tar(tar, lambda name, data: None if name.startswith(victim + ".") else data)
    errors = validate(copy).errors
    assert any(f"missing from the tar, e.g. {victim}" in e for e in errors), errors
    assert any("tar has" in e and "stats says" in e for e in errors)


def test_size_mismatch_and_missing_member_are_caught(copy):
    small = io.BytesIO()
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(small, format="PNG")
    tar = copy / "shards" / "000000.tar"
    with tarfile.open(tar) as tf:
        names = tf.getnames()
    first, second = names[0].split(".")[0], next(n for n in names if not n.startswith(names[0].split(".")[0]))
    second = second.split(".")[0]

    def edit(name, data):
        if name == f"{first}.degraded.png":
            return small.getvalue()
        if name == f"{second}.json":
            return None
        return data

    rewrite_tar(tar, edit)
    errors = validate(copy).errors
    assert any(first in e and "sizes differ" in e for e in errors), errors
    assert any(second in e and "lacks json" in e for e in errors), errors


def test_unfinished_dataset_is_reported(copy):
    (copy / "dataset.json").unlink()
    assert "dataset.json missing" in validate(copy).errors[0]


def test_stats_table_plots_and_cli(dataset, tmp_path, capsys):
    st = collect(dataset)
    assert st.rows == 12 and st.status["ok"] + st.status["failed"] + st.status["skipped"] == 12
    assert st.status["failed"] >= 1 and any(k.startswith("failed: truncated") for k in st.failures)
    assert st.ops["gaussian_noise"] == st.status["ok"]
    assert st.ops["pixelate"] >= 1 and st.severities["pixelate"][3] == st.ops["pixelate"]
    table = format_table(st)
    assert "pairs by source" in table and "gaussian_noise" in table
    written = plot(st, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["failures.png", "ops.png", "severities.png", "sources.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert main(["stats", str(dataset), "--no-plots", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 12


def test_stats_names_the_skip_reason_not_the_status():
    from corruptor.build.stats import _reason

    note = "skipped: no region in area range [0.02, 0.5] among 7 candidates"
    assert _reason("skipped", note) == "no region in area range [0.02, 0.5] among N candidates"
    assert _reason("failed", "truncated: OSError: image file is truncated") == "truncated"
    assert _reason("failed", None) == "unknown"


def test_garbled_done_marker_is_reported_not_raised(copy):
    (copy / "shards" / "000000.stats.json").write_text("{not json")
    report = validate(copy, decode=False)
    assert not report.ok and any("000000.stats.json is unreadable" in e for e in report.errors)


def test_tar_members_carry_no_pax_headers(dataset):
    """Integer mtime/uid/gid: plain ustar members, no per-member PAX records."""
    with tarfile.open(next((dataset / "shards").glob("*.tar"))) as tf:
        members = tf.getmembers()
    assert members and all(m.mtime == 0 and not m.pax_headers for m in members)
