import numpy as np
import pytest

from corruptor.masks import rle


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 33)])
def test_round_trip_random_masks(shape):
    rng = np.random.default_rng(0)
    for density in (0.0, 0.1, 0.5, 1.0):
        mask = rng.random(shape) < density
        enc = rle.encode(mask)
        assert enc["size"] == list(shape)
        np.testing.assert_array_equal(rle.decode(enc), mask)
        assert rle.area(enc) == int(mask.sum())


def test_known_coco_string():
    # 3x3 mask with the centre pixel set: runs (column-major) 4 zeros, 1 one, 4 zeros.
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    assert rle.decode({"size": [3, 3], "counts": [4, 1, 4]}).tolist() == mask.tolist()
    assert rle.encode(mask)["counts"] == "414"


def test_bad_counts_rejected():
    with pytest.raises(ValueError, match="sum"):
        rle.decode({"size": [2, 2], "counts": [1, 1]})


def test_long_runs_and_large_deltas_round_trip():
    """Runs far apart in length exercise multi-chunk and negative deltas."""
    mask = np.zeros((300, 257), bool)
    mask[10:290, 5:6] = True
    mask[:, 100:250] = True
    mask[150, :] = False
    enc = rle.encode(mask)
    np.testing.assert_array_equal(rle.decode(enc), mask)
