"""The release's data root `maa-datasets/{SOURCE}/{ref,dis,metadata.jsonl}` given as one source."""
import json

import numpy as np
import pytest
from PIL import Image

from corruptor.build.planner import plan
from corruptor.sources.sources import SourceError, SourceSpec, scan_sources


def _release_root(root, sources=("CC12M", "COCO"), n=3, nested=False):
    rng = np.random.default_rng(0)
    for name in sources:
        folder = root / ("web" if nested else "") / name
        for sub in ("ref", "dis"):
            (folder / sub).mkdir(parents=True)
        records = []
        for i in range(n):
            a = (rng.random((20, 24, 3)) * 255).astype("uint8")
            Image.fromarray(a).save(folder / "ref" / f"im{i}.png")
            Image.fromarray(255 - a).save(folder / "dis" / f"im{i}.png")
            records.append({"ref": f"ref/im{i}.png", "dis": f"dis/im{i}.png", "degradation": f"d{i}"})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.mark.parametrize("nested", [False, True])
def test_root_becomes_one_paired_source_per_folder(tmp_path, nested):
    root = _release_root(tmp_path / "maa-datasets", nested=nested)
    scanned = scan_sources([SourceSpec("release", str(root))])
    names = [s.spec.name for s in scanned]
    assert names == (["web-CC12M", "web-COCO"] if nested else ["CC12M", "COCO"])
    for src in scanned:
        assert src.source_type == "paired" and len(src.items) == 3
        # a degraded image is never a reference
        assert all(it.paired and it.ref.startswith("ref/") and it.dis_ref.startswith("dis/") for it in src.items)
        assert [it.meta["degradation"] for it in src.items] == ["d0", "d1", "d2"]
        assert src.notes["pairs_with_metadata"] == 3


def test_paired_source_plans_without_crops_and_says_what_it_gives(tmp_path, caplog):
    root = _release_root(tmp_path / "maa-datasets")
    scanned = scan_sources([SourceSpec("release", str(root))])
    with caplog.at_level("WARNING"):
        p = plan(scanned, target=10, seed=0, shard_size=4)
    assert sum(len(s) for s in p.shards) == 6  # every pair once
    assert any("has 3 pairs" in r.getMessage() and "5 planned" in r.getMessage() for r in caplog.records)


def test_loose_images_beside_paired_folders_and_bad_metadata_are_refused(tmp_path):
    root = _release_root(tmp_path / "maa-datasets")
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(root / "stray.png")
    with pytest.raises(SourceError, match=r"1 image\(s\) outside them .*stray.png"):
        scan_sources([SourceSpec("release", str(root))])
    (root / "stray.png").unlink()
    (root / "COCO" / "metadata.jsonl").write_text("{not json\n")
    with pytest.raises(SourceError, match=r"metadata.jsonl:1: not a JSON object"):
        scan_sources([SourceSpec("release", str(root))])
