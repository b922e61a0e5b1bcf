import json

import pytest

from maa_format import FORMAT, FormatError
from maa_format.io import atomic_write, canonical_json, content_hash
from maa_format.keys import check_key, image_group, sample_key
from maa_format.dataset_files import read_dataset
from maa_format.layout import ShardPaths, listed_shards


def test_format_is_checked_on_read(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"format": FORMAT, "shards": ["000000"]}))
    doc = read_dataset(tmp_path, full=False)  # the trainer's lenient form: shards by name
    assert listed_shards(tmp_path, doc) == [tmp_path / "shards" / "000000.tar"]
    for bad in ({"format": "maa-pairs/2"}, {}):
        (tmp_path / "dataset.json").write_text(json.dumps(bad))
        with pytest.raises(FormatError, match="maa-pairs/1"):
            read_dataset(tmp_path, full=False)


def test_shard_paths_and_keys():
    paths = ShardPaths.of("d", 7)
    assert (paths.tar.name, paths.manifest.name, paths.stats.name) == (
        "000007.tar", "000007.parquet", "000007.stats.json")
    key = sample_key("photos", "a/b.jpg", 2, 1)
    assert key.startswith("photos-") and key.endswith("-v2-c1") and check_key(key) == key
    assert image_group(key) == image_group(sample_key("photos", "a/b.jpg", 0, 0)) != image_group(
        sample_key("photos", "a/c.jpg", 2, 1))
    with pytest.raises(ValueError, match="must not contain"):
        check_key("a.b")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    atomic_write(target, "1")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_canonical_json_is_order_free():
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert canonical_json({"a": "é"}, ascii=True) == '{"a":"\\u00e9"}'
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
