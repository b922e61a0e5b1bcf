"""Two-level bootstrap over seeds and test images: the seeds' spread and the images' both widen
the interval, the draws are shared by every row (paired), and missing cells are left out."""
import numpy as np
import pytest

from maa_train.eval.bootstrap import mean_interval, percentile_interval, seed_replicates, two_level_replicates


def test_seed_spread_widens_the_interval_beyond_an_images_only_bootstrap():
    rng = np.random.default_rng(0)
    x = np.array([off + rng.normal(0, 1, 300) for off in (0.0, 30.0, 60.0)])  # [seeds, images]
    two = percentile_interval(two_level_replicates(x[None], reps=500, seed=1)[0])
    one = mean_interval(x.ravel(), reps=500, seed=1)
    assert two[0] <= x.mean() <= two[1] and two[1] - two[0] > 20  # seeds 0, 30, 60: the mean is uncertain
    assert one["hi"] - one["lo"] < 5  # pooling the images as if independent hides the seeds


def test_rows_share_the_draws_and_missing_cells_are_left_out():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (2, 50))
    shifted = base + 1.0
    shifted_gaps = shifted.copy()
    shifted_gaps[:, :5] = np.nan  # failed images: left out, not counted as 0
    reps = two_level_replicates(np.stack([base, shifted, shifted_gaps]), reps=200, seed=3)
    assert np.allclose(reps[1] - reps[0], 1.0)  # the same draw for every row: the difference is exact
    assert np.nanmean(reps[2]) == pytest.approx(np.nanmean(reps[1]), abs=0.1)
    assert (reps == two_level_replicates(np.stack([base, shifted, shifted_gaps]), reps=200, seed=3)).all()
    with pytest.raises(ValueError, match="rows, seeds, items"):
        two_level_replicates(base)


def test_seed_replicates_average_replicate_b_over_resampled_seeds():
    r = np.zeros((2, 3, 400))
    r[1] = np.array([1.0, 2.0, 3.0])[:, None]  # row 1: each seed's replicates sit at its own value
    out = seed_replicates(r, seed=0)
    assert out.shape == (2, 400) and (out[0] == 0).all()
    lo, hi = percentile_interval(out[1])
    assert 1.0 <= lo < 2.0 < hi <= 3.0 and set(np.round(out[1] * 3)) <= set(range(3, 10))
