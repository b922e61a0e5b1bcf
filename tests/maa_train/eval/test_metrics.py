"""Metrics against float64 NumPy references written here, plus their defining properties."""
import numpy as np
import pytest
import torch

from maa_train.eval import metrics


def _np_sq(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _np_mmd2_rbf(x, y):
    z = np.concatenate([x, y])
    d = _np_sq(z, z)
    h = np.median(d[~np.eye(len(z), dtype=bool)])
    k = lambda a, b: np.exp(-_np_sq(a, b) / h)  # noqa: E731
    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * k(x, y).mean())


def _np_energy(x, y):
    dist = lambda a, b: np.sqrt(_np_sq(a, b))  # noqa: E731
    return 2 * dist(x, y).mean() - dist(x, x).mean() - dist(y, y).mean()


def _np_cka(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


@pytest.fixture
def sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 5))
    y = rng.normal(loc=0.4, size=(19, 5))
    return x, y


def test_against_numpy_references(sets):
    x, y = sets
    tx, ty = torch.tensor(x), torch.tensor(y)
    assert metrics.mmd2(tx, ty) == pytest.approx(_np_mmd2_rbf(x, y), rel=1e-10)
    assert metrics.energy_distance(tx, ty) == pytest.approx(_np_energy(x, y), rel=1e-10)
    assert metrics.linear_cka(tx, tx[:, [1, 0, 2, 3, 4]] * 2) == pytest.approx(1.0)
    assert metrics.linear_cka(tx[:19], ty) == pytest.approx(_np_cka(x[:19], y), rel=1e-10)
    assert metrics.paired_mse(tx[:19], ty) == pytest.approx(((x[:19] - y) ** 2).mean())
    kp = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    n, m = len(x), len(y)
    ref = ((kp(x, x).sum() - np.trace(kp(x, x))) / (n * (n - 1)) + (kp(y, y).sum() - np.trace(kp(y, y))) / (m * (m - 1))
           - 2 * kp(x, y).mean())
    assert metrics.mmd2(tx, ty, kernel="poly") == pytest.approx(ref, rel=1e-10)


def test_properties(sets):
    x, y = (torch.tensor(a) for a in sets)
    assert metrics.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert metrics.linear_cka(x, x) == pytest.approx(1.0)
    assert metrics.mmd2(x, y) == pytest.approx(metrics.mmd2(y, x))
    assert metrics.energy_distance(x, y) == pytest.approx(metrics.energy_distance(y, x))
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert metrics.linear_cka(x, x @ q * 3.0) == pytest.approx(1.0)
    # Farther distributions score higher.
    assert metrics.mmd2(x, y + 3) > metrics.mmd2(x, y) > metrics.mmd2(x, x[torch.randperm(len(x))]) - 1e-12
    mean, std = metrics.kid(x, y + 1, subsets=10, subset_size=15, generator=torch.Generator().manual_seed(0))
    assert mean > 0 and std >= 0


def test_too_small_sets_rejected():
    one = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.mmd2(one, one)
    with pytest.raises(ValueError, match="paired"):
        metrics.linear_cka(torch.zeros(3, 4), torch.zeros(4, 4))


def test_token_sets():
    f = torch.arange(2 * 6 * 3, dtype=torch.float64).reshape(2, 6, 3)
    assert metrics.token_set(f, "pooled").shape == (2, 3)
    assert metrics.token_set(f, "all").shape == (12, 3)
    s = metrics.token_set(f, "sampled", per_image=4, generator=torch.Generator().manual_seed(0))
    assert s.shape == (8, 3)
    assert all(any(torch.equal(r, t) for t in f[i // 4]) for i, r in enumerate(s))


def test_width_checks():
    with pytest.raises(ValueError, match="equal d"):
        metrics.paired_mse(torch.zeros(3, 4), torch.zeros(3, 5))
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert metrics.linear_cka(x, torch.cat([x, x[:, :1]], dim=1)) == pytest.approx(
        _np_cka(x.numpy(), torch.cat([x, x[:, :1]], dim=1).numpy()), rel=1e-10)


def test_blockwise_sums_equal_whole_matrices(sets, monkeypatch):
    # Large sets are summed block by block; tiny blocks here must give the same figures.
    tx, ty = (torch.tensor(a) for a in sets)
    whole = (metrics.mmd2(tx, ty), metrics.mmd2(tx, ty, kernel="poly"), metrics.energy_distance(tx, ty))
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 40)  # 1 or 2 rows per block, ragged last block
    blocked = (metrics.mmd2(tx, ty), metrics.mmd2(tx, ty, kernel="poly"), metrics.energy_distance(tx, ty))
    assert blocked == pytest.approx(whole, rel=1e-12)
    assert blocked[2] == pytest.approx(_np_energy(*sets), rel=1e-10)
    assert metrics.energy_distance(tx, tx) == pytest.approx(0.0, abs=1e-12)


def test_bandwidth_of_large_sets_comes_from_a_fixed_sample(monkeypatch):
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, 6, generator=g, dtype=torch.float64), torch.randn(260, 6, generator=g, dtype=torch.float64)
    exact = metrics.median_bandwidth(x, y)
    monkeypatch.setattr(metrics, "BANDWIDTH_ROWS", 200)
    sampled = metrics.median_bandwidth(x, y)
    assert sampled != exact and sampled == pytest.approx(exact, rel=0.05)
    assert metrics.median_bandwidth(x, y) == sampled  # the same rows every call
