"""Split-half mechanism metrics: against plain NumPy references, unbiased on one distribution
(where the same-images estimator reads negative), clearly positive on a shifted one."""
import numpy as np
import pytest
import torch

from maa_train.eval import metrics
from maa_train.eval.split_metrics import SplitSettings, group_rows, split_weights

REF = "clean reference"


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- plain NumPy references -------------------------------------------------------------------------
def np_image_kernel(a, b, k):
    """Mean kernel between the rows of image i of a [n, r, d] and image j of b."""
    return np.array([[np.mean([[k(u, v) for v in bj] for u in ai]) for bj in b] for ai in a])


def np_within(s):
    n = len(s)
    return (s.sum() - np.trace(s)) / (n * (n - 1))


def np_two_sample(x, y, k):
    return (np_within(np_image_kernel(x, x, k)) + np_within(np_image_kernel(y, y, k))
            - 2 * np_image_kernel(x, y, k).mean())


def np_median_bandwidth(x, y):
    z = np.concatenate([x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])])
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    return np.median(d[~np.eye(len(z), dtype=bool)])


def np_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def draw(n, r=1, d=6, seed=0, shift=0.0, same=False):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(n, r, d, generator=g, dtype=torch.float64)
    other = clean.clone() if same else torch.randn(n, r, d, generator=g, dtype=torch.float64)
    return clean, other + shift


def keys_of(n):
    return [f"img{i:04d}" for i in range(n)]


@pytest.mark.parametrize("r", [1, 3])
def test_point_values_match_numpy_reference(r):
    n = 14
    clean, x = draw(n, r, seed=1, shift=0.3)
    sq_err = ((x - clean) ** 2).mean(dim=(1, 2))
    keys = keys_of(n)
    out = group_rows(clean, {"m": x}, {"m": sq_err}, keys, REF, SplitSettings(seed=3, reps=0))
    wa, wb = split_weights(keys, 0, 3)
    a, b = wa[:, 0].numpy().astype(bool), wb[:, 0].numpy().astype(bool)
    assert a.sum() == b.sum() == n // 2 and not (a & b).any()
    xa, cb, ca = x.numpy()[a], clean.numpy()[b], clean.numpy()[a]
    d = x.shape[-1]
    h = np_median_bandwidth(xa, cb)
    rbf = lambda u, v: np.exp(-((u - v) ** 2).sum() / h)  # noqa: E731
    poly = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    dist = lambda u, v: np.sqrt(((u - v) ** 2).sum())  # noqa: E731
    row = out["m"]
    assert row["bandwidth"] == pytest.approx(h, rel=1e-12)
    assert row["mmd2"] == pytest.approx(np_two_sample(xa, cb, rbf), rel=1e-9, abs=1e-12)
    assert row["kid"] == pytest.approx(np_two_sample(xa, cb, poly), rel=1e-9, abs=1e-12)
    assert row["energy"] == pytest.approx(-np_two_sample(xa, cb, dist), rel=1e-9, abs=1e-12)
    assert row["paired_mse"] == pytest.approx(float(sq_err.mean()), rel=1e-12)
    assert row["cka"] == pytest.approx(np_cka(x.numpy().reshape(-1, d), clean.numpy().reshape(-1, d)), rel=1e-9)
    assert row["images"] == {"a": n // 2, "b": n // 2} and row["rows"] == n // 2 * r
    hc = np_median_bandwidth(ca, cb)
    rbf_c = lambda u, v: np.exp(-((u - v) ** 2).sum() / hc)  # noqa: E731
    ref = out[REF]
    assert ref["mmd2"] == pytest.approx(np_two_sample(ca, cb, rbf_c), rel=1e-9, abs=1e-12)
    assert ref["paired_mse"] is None and ref["cka"] is None
    if r == 1:  # one row per image: the usual unbiased MMD^2 of the two halves
        assert row["mmd2"] == pytest.approx(metrics.mmd2(torch.from_numpy(xa[:, 0]), torch.from_numpy(cb[:, 0]),
                                                         bandwidth=h), rel=1e-9)


def test_one_distribution_reads_zero_on_average_where_same_images_read_negative():
    """Corrected features equal to the clean ones (an identity adapter on clean images): the
    same-images estimator is negative every time; the split estimator is centred on 0."""
    split_vals, same_vals, ref_vals, indep_vals = [], [], [], []
    for seed in range(50):
        clean, x = draw(40, seed=seed, same=True)
        _, fresh = draw(40, seed=seed + 1000)
        err = torch.zeros(40, dtype=torch.float64)
        out = group_rows(clean, {"same": x, "fresh": fresh}, {"same": err, "fresh": err}, keys_of(40), REF,
                         SplitSettings(seed=seed, reps=0))
        split_vals.append(out["same"]["mmd2"])
        indep_vals.append(out["fresh"]["mmd2"])
        ref_vals.append(out[REF]["mmd2"])
        same_vals.append(metrics.mmd2(x[:, 0], clean[:, 0]))
    assert max(same_vals) < 0  # the bias this module exists to remove
    for vals in (split_vals, indep_vals, ref_vals):
        mean, se = np.mean(vals), np.std(vals, ddof=1) / np.sqrt(len(vals))
        assert abs(mean) < 3 * se + 1e-3, (mean, se)
        assert mean > -2 * se
    # identical features on both sides: the model row is the clean reference exactly
    assert split_vals == pytest.approx(ref_vals, rel=1e-12, abs=1e-15)


def test_shifted_distribution_is_clearly_positive_with_intervals():
    clean, x = draw(80, d=4, seed=7, shift=1.0)
    err = ((x - clean) ** 2).mean(dim=(1, 2))
    out = group_rows(clean, {"shifted": x}, {"shifted": err}, keys_of(80), REF, SplitSettings(seed=0, reps=200))
    row, ref = out["shifted"], out[REF]
    for m in ("mmd2", "kid", "energy"):
        lo, hi = row[f"{m}_ci"]
        assert lo <= row[m] <= hi and lo > 0, m
        assert row[m] > ref[f"{m}_ci"][1], m  # above the reference's whole interval
    lo, hi = ref["mmd2_ci"]
    assert lo < 0 < hi
    lo, hi = row["paired_mse_ci"]
    assert lo <= row["paired_mse"] <= hi
    lo, hi = row["cka_ci"]
    assert lo <= row["cka"] <= hi


def test_deterministic_and_independent_of_image_order():
    clean, x = draw(20, r=2, seed=5, shift=0.2)
    err = ((x - clean) ** 2).mean(dim=(1, 2))
    keys = keys_of(20)
    settings = SplitSettings(seed=1, reps=30)
    one = group_rows(clean, {"m": x}, {"m": err}, keys, REF, settings)
    assert group_rows(clean, {"m": x}, {"m": err}, keys, REF, settings) == one
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(9))
    other = group_rows(clean[perm], {"m": x[perm]}, {"m": err[perm]}, [keys[i] for i in perm], REF, settings)
    for row in ("m", REF):
        for key in ("mmd2", "kid", "energy"):
            assert other[row][key] == pytest.approx(one[row][key], rel=1e-9, abs=1e-12)
            assert other[row][f"{key}_ci"] == pytest.approx(one[row][f"{key}_ci"], rel=1e-9, abs=1e-12)


def test_too_few_images_is_an_error():
    clean, x = draw(3)
    with pytest.raises(ValueError, match="at least 4"):
        group_rows(clean, {"m": x}, {"m": torch.zeros(3)}, keys_of(3), REF)
