"""The README's reading examples, call for call, on a dataset where only some samples carry
mask.png and shards/ holds Parquet and stats files beside the tars."""
import json

import numpy as np
import pytest

from corruptor.build.builder import BuildConfig, build
from corruptor.sources.sources import SourceSpec
from maa_format.readers import shard_files
from tests.corruptor.build.build_fixtures import MASKS, make_photos

# A local stage on about half the samples: mask.png on some samples only.
MIXED_RECIPE = {
    "name": "test-mixed",
    "output": {"size": 24, "crop": "center"},
    "global": {"op": "gaussian_noise", "severity": 2},
    "local": {"p": 0.5, "regions": [1, 2], "area": [0.01, 0.7], "ops": {"op": "pixelate", "severity": 3}},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    make_photos(root / "src", 6)
    out = root / "ds"
    build(BuildConfig(recipe=MIXED_RECIPE, sources=[SourceSpec("s", str(root / "src"))], out=out,
                      target=10, shard_size=4, mask_source=MASKS))
    return out


@pytest.fixture(scope="module")
def expected(dataset):
    import pyarrow.parquet as pq

    rows = [r for p in sorted((dataset / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    ok = [r for r in rows if r["status"] == "ok"]
    with_mask = {r["key"] for r in ok if r["mask_bytes"]}
    assert 0 < len(with_mask) < len(ok), "the fixture must mix samples with and without mask.png"
    assert len(list((dataset / "shards").glob("*.tar"))) > 1
    return {"rows": len(rows), "ok": len(ok), "with_mask": with_mask}


def test_shard_files_lists_finished_shards_in_order(dataset):
    tars = shard_files(dataset)
    assert tars == [str(dataset / "shards" / f"{s['name']}.tar")
                    for s in json.loads((dataset / "dataset.json").read_text())["shards"]]
    assert [p.replace(".parquet", ".tar") for p in shard_files(dataset, "parquet")] == tars
    with pytest.raises(ValueError, match="allowed: tar, parquet"):
        shard_files(dataset, "stats")


def test_readme_pyarrow(dataset, expected):
    import pyarrow.parquet as pq

    table = pq.read_table(shard_files(dataset, "parquet"))
    assert table.num_rows == expected["rows"]
    assert table["status"].to_pylist().count("ok") == expected["ok"]
    with pytest.raises(Exception):      # why the README does not pass the folder
        pq.read_table(dataset / "shards")


def test_readme_webdataset(dataset, expected):
    import webdataset as wds

    pairs = wds.WebDataset(shard_files(dataset), shardshuffle=False).decode("rgb")
    seen = {s["__key__"]: s for s in pairs}
    assert len(seen) == expected["ok"]
    assert {k for k, s in seen.items() if "mask.png" in s} == expected["with_mask"]
    sample = next(iter(seen.values()))
    assert sample["clean.png"].shape == sample["degraded.png"].shape and isinstance(sample["json"], dict)


@pytest.mark.slow
def test_readme_ray_data(dataset, expected):
    ray = pytest.importorskip("ray")
    from corruptor.run.distributor import ensure_ray

    started = ensure_ray(None, num_cpus=1)
    try:
        ray.data.DataContext.get_current().enable_tensor_extension_casting = False
        ds = ray.data.read_webdataset(str(dataset / "shards"), file_extensions=["tar"])
        assert ds.count() == expected["ok"]
        first = ds.take(2)
        assert len(first) == 2 and first[0]["clean.png"].shape == first[0]["degraded.png"].shape
        keys, masked = [], set()
        for row in ds.iter_rows():
            keys.append(row["__key__"])
            if isinstance(row.get("mask.png"), np.ndarray):   # other samples read NaN there
                masked.add(row["__key__"])
                assert row["mask.png"].shape == row["clean.png"].shape[:2]
        assert sorted(keys) == sorted(set(keys)) and len(keys) == expected["ok"]
        assert masked == expected["with_mask"]
    finally:
        if started:
            ray.shutdown()
