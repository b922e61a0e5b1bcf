"""The lazy mask view gives exactly the eager path's masks and areas; the memo is bounded."""
import cv2
import numpy as np
import pytest

from corruptor.build.mask_view import CroppedMasks, nearest_index, runs_of
from corruptor.build.source_memo import SourceMemo
from corruptor.build.worker import plan_geometry
from corruptor.masks import rle


@pytest.mark.parametrize("src,dst", [(375, 512), (500, 683), (512, 512), (1000, 37), (7, 1), (1, 9), (333, 334)])
def test_nearest_index_is_opencvs(src, dst):
    probe = np.arange(src, dtype=np.float32)[None, :]  # value = source column
    got = cv2.resize(probe, (dst, 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.intp)
    np.testing.assert_array_equal(nearest_index(src, dst), got)


def _masks(rng, shape, n):
    out = []
    for _ in range(n):
        m = np.zeros(shape, bool)
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        m[y0: y0 + rng.integers(1, shape[0]), x0: x0 + rng.integers(1, shape[1])] = True
        m &= rng.random(shape) < 0.9
        out.append(m)
    out.append(np.zeros(shape, bool))  # empty: dropped by both paths
    return out


@pytest.mark.parametrize("shape,size,crop", [((75, 100), 64, "center"), ((75, 100), 64, "random"),
                                             ((40, 30), 96, "random"), ((50, 60), None, "none"),
                                             ((61, 47), 61, "center")])
def test_view_equals_eager_mapping(shape, size, crop):
    rng = np.random.default_rng(7)
    masks = _masks(rng, shape, 12)
    geometry = plan_geometry(shape, size, crop, rng)
    eager = [m2 for m2 in (geometry.apply(m.astype(np.uint8), nearest=True).astype(bool) for m in masks)
             if m2.any()]
    runs = [runs_of(rle.encode(m)["counts"], shape) for m in masks]
    view = CroppedMasks(runs, shape, geometry)
    assert len(view) == len(eager)
    assert view.areas == [int(np.count_nonzero(m)) for m in eager]
    assert view.size == eager[0].size if eager else True
    for i in reversed(range(len(view))):  # any order, decoded on demand
        np.testing.assert_array_equal(view[i], eager[i])


def test_runs_of_rejects_bad_counts():
    good = rle.encode(np.ones((3, 4), bool))["counts"]
    with pytest.raises(ValueError, match="sum to"):
        runs_of(good, (3, 5))


def test_memo_reuses_bounds_and_freezes():
    memo = SourceMemo(max_sources=2)
    calls = []

    def make(v):
        calls.append(v)
        return np.full(3, v)

    a = memo.get("s1", "k", lambda: make(1))
    assert memo.get("s1", "k", lambda: make(9)) is a and calls == [1]
    with pytest.raises(ValueError):
        a[0] = 5  # shared between variants: must not be written
    memo.get("s2", "k", lambda: make(2))
    memo.get("s3", "k", lambda: make(3))  # evicts s1, the least recently used
    memo.get("s1", "k", lambda: make(4))
    assert calls == [1, 2, 3, 4]
    with pytest.raises(RuntimeError):
        memo.get("s4", "k", lambda: (_ for _ in ()).throw(RuntimeError("x")))
    assert memo.get("s4", "k", lambda: make(5))[0] == 5  # a failure stores nothing


def test_cache_get_runs_checks_area(tmp_path):
    from corruptor.masks.cache import MaskCache
    from corruptor.masks.source import MaskSourceConfig

    cache = MaskCache(tmp_path, MaskSourceConfig())
    sha = "ab" * 32
    masks = _masks(np.random.default_rng(1), (20, 30), 3)
    cache.put(sha, masks)
    runs, size = cache.get_runs(sha, (20, 30))
    assert size == (20, 30) and [int(r[1::2].sum()) for r in runs] == [int(m.sum()) for m in masks]
    assert cache.get_runs(sha, (21, 30)) is None  # wrong image size: discarded, a miss
    assert not cache.path(sha).exists()


def test_memo_byte_budget_keeps_the_current_source():
    memo = SourceMemo(max_sources=8, max_bytes=1000)
    memo.get("a", "k", lambda: np.zeros(600, np.uint8))
    memo.get("b", "k", lambda: np.zeros(600, np.uint8))  # 1200 > 1000: "a" goes
    calls = []
    memo.get("a", "k", lambda: calls.append(1) or np.zeros(600, np.uint8))
    assert calls == [1]
    big = memo.get("c", "k", lambda: np.zeros(5000, np.uint8))  # over budget alone: kept while current
    assert memo.get("c", "k", lambda: None) is big
