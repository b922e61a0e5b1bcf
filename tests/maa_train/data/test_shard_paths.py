"""The trainer's shard reader follows no path out of a dataset and names a wrongly typed field."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from maa_format import FORMAT
from maa_format.dataset_files import DatasetFileError
from maa_format.paths import UnsafePathError
from maa_train.data.shards import resolve_shards
from tests.maa_train.data.shardkit import write_dataset


@pytest.fixture
def ds(tmp_path):
    return write_dataset(tmp_path / "ds", [3, 2])


@pytest.mark.parametrize("names, says", [
    (["/etc/passwd"], r"shards\[0\]: shard name '/etc/passwd' must be one file-name component"),
    (["000000", "../../outside/000000"], r"shards\[1\]: shard name '\.\./\.\./outside/000000' must be one"),
    ([{"name": ".."}], r"shards\[0\]\.name: shard name '\.\.' must be one"),
    ([7], r"shards\[0\]: expected an object, got int"),
    ({"000000": 1}, r"shards: expected a list, got dict"),
])
def test_names_in_dataset_json_cannot_leave_the_dataset(ds, names, says):
    (ds / "dataset.json").write_text(json.dumps({"format": FORMAT, "shards": names}))
    with pytest.raises(DatasetFileError, match=rf"dataset\.json: {says}"):
        resolve_shards(str(ds))


@pytest.mark.parametrize("name", ["000001.tar", "000001.stats.json"])
def test_a_link_out_of_the_dataset_is_refused(ds, tmp_path, name):
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    shutil.move(ds / "shards" / name, outside)
    os.symlink(outside, ds / "shards" / name)
    with pytest.raises(UnsafePathError, match="leads out of .* through a symbolic link"):
        resolve_shards(str(ds))


def test_links_inside_and_a_linked_dataset_folder_are_fine(ds, tmp_path):
    (ds / "store").mkdir()
    shutil.move(ds / "shards" / "000001.tar", ds / "store" / "000001.tar")
    os.symlink(ds / "store" / "000001.tar", ds / "shards" / "000001.tar")
    os.symlink(ds, tmp_path / "linked")
    assert [s.count for s in resolve_shards(str(tmp_path / "linked"))] == [3, 2]


def test_wrongly_typed_stats_name_the_field(ds):
    (ds / "shards" / "000000.stats.json").write_text(json.dumps({"ok": "3"}))
    with pytest.raises(DatasetFileError, match=r"000000\.stats\.json: ok: expected an integer, got str"):
        resolve_shards(str(ds))
    (ds / "shards" / "000000.stats.json").write_text("[1, 2")
    with pytest.raises(DatasetFileError, match=r"000000\.stats\.json: not valid JSON at line 1"):
        resolve_shards(str(ds))


def test_maa_train_exits_2_with_one_line(ds, tmp_path, capsys):
    from maa_train.train.cli import main
    from tests.maa_train.eval.evalkit import train_config

    (ds / "dataset.json").write_text(json.dumps({"format": FORMAT, "shards": ["../../x"]}))
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(train_config(tmp_path / "no-model", ds, tmp_path / "run")))  # data is read first
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "must be one file-name component" in err
