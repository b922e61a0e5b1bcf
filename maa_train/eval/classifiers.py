"""Frozen consumers of image features: a linear probe and a k-NN classifier.

Both are fitted once, on clean features of a training split, and then only predict: they
stand in for the language model of the paper, which was calibrated on clean features and
never sees the adapters.

- ``LinearProbe``: multinomial logistic regression on standardised features (mean and std
  of the training features), L2 penalty on the weights (not the bias) chosen by k-fold
  cross-validation over a fixed grid, full-batch L-BFGS (SciPy) in float64 on the CPU.
  Deterministic: fixed folds (every k-th image of each class), fixed initialisation (zeros),
  no randomness anywhere.
- ``KNNClassifier``: cosine similarity to the L2-normalised training features, majority
  vote of the k nearest; a tie goes to the tied class with the larger summed similarity,
  then to the smaller class index.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
DEFAULT_L2 = 1e-2  # when the smallest class is too small for cross-validation
CV_FOLDS = 5


def _as64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


@contextmanager
def single_thread():
    """Run small matrix work on one intra-op thread: on a shared machine, a 300 x 400 matmul
    waits ~100x longer for a second busy core than it takes to compute (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit_softmax(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, max_iter: int,
                 init: torch.Tensor | None = None) -> torch.Tensor:
    """Weights [d + 1, classes] (last row the bias) minimising mean cross-entropy + l2/2 |W|^2:
    SciPy's L-BFGS-B on the exact gradient, computed in float64 without autograd."""
    from scipy.optimize import minimize

    xb = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    onehot = torch.nn.functional.one_hot(y, classes).to(torch.float64)
    n, d = xb.shape

    def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = torch.from_numpy(flat).view(d, classes)
        logp = torch.log_softmax(xb @ w, dim=1)
        loss = -(onehot * logp).sum() / n + 0.5 * l2 * w[:-1].pow(2).sum()
        grad = xb.T @ (logp.exp() - onehot) / n
        grad[:-1] += l2 * w[:-1]
        return float(loss), grad.numpy().ravel()

    start = np.zeros(d * classes) if init is None else init.numpy().ravel()
    res = minimize(loss_grad, start, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-6, "ftol": 1e-10})
    return torch.from_numpy(res.x.reshape(d, classes).copy())


def stratified_folds(y: torch.Tensor, k: int) -> torch.Tensor:
    """Fold of each row: the i-th row of a class (in the given order) goes to fold i % k."""
    folds = torch.empty_like(y)
    for c in y.unique():
        rows = (y == c).nonzero().flatten()
        folds[rows] = torch.arange(len(rows)) % k
    return folds


@dataclass
class LinearProbe:
    classes: int
    l2: float | None = None           # None: chosen by cross-validation over L2_GRID
    max_iter: int = 1000
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    cv: dict = field(default_factory=dict)

    def _standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (_as64(x) - self.mean) / self.std

    def fit(self, x, y) -> "LinearProbe":
        with torch.inference_mode(False), single_thread():
            return self._fit(_as64(x).clone(), torch.as_tensor(y, dtype=torch.long).clone())

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> "LinearProbe":
        self.mean = x.mean(0)
        std = x.std(0, unbiased=False)
        self.std = torch.where(std > 1e-12 * max(float(std.max()), 1e-300), std, torch.ones_like(std))
        z = self._standardise(x)
        if self.l2 is None:
            self.l2 = self._cross_validate(z, y)
        self.weights = _fit_softmax(z, y, self.classes, self.l2, self.max_iter)
        return self

    def _cross_validate(self, z: torch.Tensor, y: torch.Tensor) -> float:
        smallest = int(torch.bincount(y, minlength=self.classes)[y.unique()].min())
        k = min(CV_FOLDS, smallest)
        if k < 2:
            self.cv = {"folds": 0, "note": f"smallest class has {smallest} training image(s): no cross-validation, "
                                            f"l2 = {DEFAULT_L2}"}
            return DEFAULT_L2
        folds = stratified_folds(y, k)
        correct = {l2: 0 for l2 in L2_GRID}
        for f in range(k):
            held = folds == f
            w = None
            # Strongest penalty first, each fit starting from the previous one's solution: the
            # weakly penalised fits converge in a fraction of the iterations from zero.
            for l2 in sorted(L2_GRID, reverse=True):
                w = _fit_softmax(z[~held], y[~held], self.classes, l2, self.max_iter, init=w)
                correct[l2] += int((self._logits(z[held], w).argmax(1) == y[held]).sum())
        scores = {l2: correct[l2] / len(y) for l2 in L2_GRID}
        best = max(scores.values())
        chosen = max(l2 for l2, s in scores.items() if s == best)  # ties: the stronger penalty
        self.cv = {"folds": k, "accuracy_by_l2": {str(k_): v for k_, v in scores.items()}, "l2": chosen}
        return chosen

    @staticmethod
    def _logits(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return z @ w[:-1] + w[-1]

    def predict(self, x) -> torch.Tensor:
        if self.weights is None:
            raise RuntimeError("LinearProbe.predict before fit")
        return self._logits(self._standardise(x), self.weights).argmax(1)

    def describe(self) -> dict:
        return {"kind": "multinomial logistic regression", "standardised": True, "l2": self.l2,
                "solver": "L-BFGS-B (SciPy), float64, zeros init", "max_iter": self.max_iter, "cv": self.cv}


@dataclass
class KNNClassifier:
    classes: int
    k: int = 10
    train: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    @staticmethod
    def _normalise(x) -> torch.Tensor:
        x = _as64(x)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def fit(self, x, y) -> "KNNClassifier":
        self.train = self._normalise(x)
        self.labels = torch.as_tensor(y, dtype=torch.long)
        return self

    @property
    def effective_k(self) -> int:
        return min(self.k, len(self.labels))

    def predict(self, x, chunk: int = 1024) -> torch.Tensor:
        if self.train is None:
            raise RuntimeError("KNNClassifier.predict before fit")
        x = self._normalise(x)
        out = []
        for start in range(0, len(x), chunk):
            sims = x[start:start + chunk] @ self.train.T
            top, idx = sims.topk(self.effective_k, dim=1)  # ties in similarity: the lower training index
            onehot = torch.nn.functional.one_hot(self.labels[idx], self.classes).to(torch.float64)
            votes = onehot.sum(1)
            mass = (onehot * top[..., None]).sum(1)
            # Votes first (one vote outweighs any similarity sum, |mass| <= k); among tied classes
            # the summed similarity; argmax keeps the lowest index.
            score = votes * (2 * self.effective_k + 1) + mass
            out.append(score.argmax(1))
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)

    def describe(self) -> dict:
        return {"kind": "k-NN", "k": self.effective_k, "similarity": "cosine",
                "vote": "majority; ties by summed similarity, then lower class index"}
