import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from corruptor.masks import cache as mask_cache

from corruptor.masks import rle
from corruptor.masks.cache import MaskCache, remove_stale_temps, temp_file
from corruptor.masks.registry import make_mask_source
from corruptor.masks.source import MaskError, MaskSourceConfig, MaskTooSmall

SHA = "0123456789abcdef" * 4


class CountingSource:
    """Wraps a real source and counts segmentation calls."""

    def __init__(self, inner):
        self.inner, self.name, self.config, self.calls = inner, inner.name, inner.config, 0

    def generate(self, images, keys=None):
        self.calls += len(images)
        return self.inner.generate(images, keys)


@pytest.fixture
def cfg():
    return MaskSourceConfig(kind="slic", max_masks=6, min_area=10)


def test_cache_hit_runs_no_segmentation(tmp_path, cfg, rgb_image):
    src = CountingSource(make_mask_source(cfg))
    first = MaskCache(tmp_path, cfg).get_or_compute(src, SHA, rgb_image)
    assert src.calls == 1 and len(first) > 0
    cache = MaskCache(tmp_path, cfg)  # a later rebuild, fresh process state
    again = cache.get_or_compute(src, SHA, rgb_image)
    assert src.calls == 1 and cache.stats() == {"hits": 1, "misses": 0, "rebuilt": 0}
    assert [m.tobytes() for m in again] == [m.tobytes() for m in first]
    assert again.scores == pytest.approx(first.scores)


def test_masks_round_trip_through_rle_file(tmp_path, cfg):
    rng = np.random.default_rng(0)
    masks = [rng.random((13, 21)) > p for p in (0.2, 0.5, 0.9)] + [np.ones((13, 21), bool)]
    cache = MaskCache(tmp_path, cfg)
    cache.put(SHA, masks, scores=[0.9, 0.8, 0.7, 0.1])
    got = cache.get(SHA, (13, 21))
    assert all(np.array_equal(a, b) for a, b in zip(got, masks)) and len(got) == 4
    assert got.scores == pytest.approx([0.9, 0.8, 0.7, 0.1])
    for m in got:  # provenance form: mask -> RLE -> mask
        assert np.array_equal(rle.decode(rle.encode(m)), m)
    assert not list(cache.dir.rglob("*.tmp"))


def test_zero_masks_are_cached_too(tmp_path, cfg):
    cache = MaskCache(tmp_path, cfg)
    cache.put(SHA, [], 10, 12)
    got = cache.get(SHA, (10, 12))
    assert got is not None and len(got) == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_file_is_detected_deleted_and_rebuilt(tmp_path, cfg, rgb_image, damage, caplog):
    src = CountingSource(make_mask_source(cfg))
    cache = MaskCache(tmp_path, cfg)
    cache.get_or_compute(src, SHA, rgb_image)
    path = cache.path(SHA)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PAR1" + bytes(200) + b"PAR1")
    with caplog.at_level(logging.WARNING, logger="corruptor.masks.cache"):
        assert cache.get(SHA) is None
    assert "discarding" in caplog.text and not path.exists() and cache.rebuilt == 1
    cache.get_or_compute(src, SHA, rgb_image)
    assert src.calls == 2 and cache.get(SHA) is not None


def test_file_from_other_settings_or_image_is_a_miss(tmp_path, cfg):
    other = MaskSourceConfig(kind="slic", max_masks=6, min_area=10, slic={"n_segments": 5})
    a, b = MaskCache(tmp_path, cfg), MaskCache(tmp_path, other)
    assert a.settings_hash != b.settings_hash
    m = np.zeros((8, 9), bool)
    m[2:5, 1:4] = True
    a.put(SHA, [m])
    assert b.get(SHA) is None  # different folder: plain miss
    # A file copied under the wrong settings folder or the wrong sha is caught by its metadata.
    b.path(SHA).parent.mkdir(parents=True)
    b.path(SHA).write_bytes(a.path(SHA).read_bytes())
    assert b.get(SHA) is None and b.rebuilt == 1 and not b.path(SHA).exists()
    wrong_sha = "f" * 64
    a.path(wrong_sha).parent.mkdir(parents=True, exist_ok=True)
    a.path(wrong_sha).write_bytes(a.path(SHA).read_bytes())
    assert not a.has(wrong_sha)
    # Right file, wrong image size (e.g. the source file was replaced): miss and rebuilt.
    assert a.get(SHA, (9, 8)) is None and not a.path(SHA).exists()


def test_per_image_error_is_raised_not_cached(tmp_path, cfg):
    cache = MaskCache(tmp_path, cfg)
    with pytest.raises(MaskTooSmall):
        cache.get_or_compute(make_mask_source(cfg), SHA, np.zeros((4, 4, 3), np.uint8))
    assert not cache.path(SHA).exists()
    assert issubclass(MaskTooSmall, MaskError)


def test_bad_key_is_refused(tmp_path, cfg):
    with pytest.raises(ValueError, match="sha256"):
        MaskCache(tmp_path, cfg).path("../../etc")


# --- temp files of interrupted writers ---------------------------------------------------

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from corruptor.masks.cache import temp_file
folder = Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)
tmp = temp_file(folder, sys.argv[2])
tmp.write_bytes(b"PAR1 half a parquet file")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_writer_killed_mid_write_leaves_a_harmless_temp_the_driver_removes(tmp_path, cfg, rgb_image):
    cache = MaskCache(tmp_path, cfg)
    folder = cache.path(SHA).parent
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(folder), SHA[:8]])
    assert proc.returncode == -signal.SIGKILL
    (left,) = folder.iterdir()
    assert left.name.startswith(f".{SHA[:8]}.{mask_cache._host()}-") and left.name.endswith(".tmp")
    # Harmless: a reader sees a miss, the writer of the same image is not in its way.
    assert cache.get(SHA) is None and not cache.has(SHA)
    src = CountingSource(make_mask_source(cfg))
    cache.get_or_compute(src, SHA, rgb_image)
    assert src.calls == 1 and cache.get(SHA, rgb_image.shape[:2]) is not None
    # Cleaned: the dead writer's file goes, the finished cache file stays.
    assert remove_stale_temps(tmp_path) == [left]
    assert sorted(p.name for p in folder.iterdir()) == [f"{SHA}.parquet"]


def test_driver_keeps_temps_of_writers_that_may_be_live(tmp_path):
    folder = tmp_path / "h" / "01"
    folder.mkdir(parents=True)
    mine = temp_file(folder, "0123abcd")  # this process: a write in flight
    elsewhere = folder / ".0123abcd.other-node-42.k2j3.tmp"  # another machine, written just now
    elsewhere.write_bytes(b"x")
    old = folder / ".0123abcd.other-node-42.zz9q.tmp"  # another machine, untouched for hours
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3 * 3600,) * 2)
    dead_here = folder / f".0123abcd.{mask_cache._host()}-99999999.a1b2.tmp"  # no such pid
    dead_here.write_bytes(b"x")
    cache_file = folder / f"{SHA}.parquet"
    cache_file.write_bytes(b"not a temp")
    os.utime(cache_file, (time.time() - 3 * 3600,) * 2)
    assert remove_stale_temps(tmp_path) == sorted([old, dead_here])
    assert mine.exists() and elsewhere.exists() and cache_file.exists()
    assert remove_stale_temps(tmp_path / "missing") == []


def test_temp_names_are_unique_per_writer(tmp_path):
    names = {temp_file(tmp_path, "0123abcd").name for _ in range(20)}
    assert len(names) == 20
    assert all(n.startswith(f".0123abcd.{mask_cache._host()}-{os.getpid()}.") for n in names)
