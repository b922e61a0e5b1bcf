"""Paths and file formats shared by the research harness scripts (no pickle anywhere).

- shared data: ``$MAA_SHARED_DATA``, else ``../shared/data`` relative to the repository root
- work folder (caches, probes, results/, adapters/): ``--work DIR`` (default ``./research_work``)
- encoder: ``--model DIR``, else the folder ``python -m maa_train.models.cli fetch vit-s-dinov2`` writes
- tensors: safetensors; probes: npz (loaded with allow_pickle=False) rebuilt into sklearn objects
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    return Path(os.environ.get("MAA_SHARED_DATA") or (REPO.parent / "shared" / "data")).resolve()


def default_model() -> Path:
    from maa_train.models.cache import resolve_cache_dir

    return resolve_cache_dir() / "models" / "vit-s-dinov2"


def pop_flags(argv: list[str], names=("--work", "--model")) -> tuple[list[str], dict]:
    """Remove ``--name VALUE`` / ``--name=VALUE`` pairs from argv; the rest stays key=value."""
    rest, flags, i = [], {}, 0
    while i < len(argv):
        a = argv[i]
        key = a.split("=", 1)[0]
        if key in names:
            if "=" in a:
                flags[key[2:]] = a.split("=", 1)[1]
            else:
                flags[key[2:]] = argv[i + 1]
                i += 1
        else:
            rest.append(a)
        i += 1
    return rest, flags


def save_tensors(path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def load_tensors(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


_SCALER = ("mean_", "var_", "scale_", "n_samples_seen_")
_LOGREG = ("coef_", "intercept_", "classes_", "n_iter_")


def save_probes(path, probes: dict) -> None:
    """{name: Pipeline(StandardScaler, LogisticRegression)} -> one npz of their fitted arrays."""
    arrays = {}
    for name, p in probes.items():
        sc, lr = p[0], p[-1]
        for a in _SCALER:
            arrays[f"{name}/scaler/{a}"] = np.asarray(getattr(sc, a))
        for a in _LOGREG:
            arrays[f"{name}/logreg/{a}"] = np.asarray(getattr(lr, a))
        arrays[f"{name}/logreg/C"] = np.asarray(lr.C)
        arrays[f"{name}/logreg/max_iter"] = np.asarray(lr.max_iter)
    np.savez(path, **arrays)


def load_probes(path) -> dict:
    """The pipelines saved by `save_probes`, with the same fitted arrays (same predictions)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    z = np.load(path, allow_pickle=False)
    names = sorted({k.split("/")[0] for k in z.files}, key=lambda n: (len(n), n))
    probes = {}
    for name in names:
        sc = StandardScaler()
        for a in _SCALER:
            setattr(sc, a, z[f"{name}/scaler/{a}"])
        sc.n_features_in_ = int(sc.mean_.shape[0])
        lr = LogisticRegression(max_iter=int(z[f"{name}/logreg/max_iter"]), C=float(z[f"{name}/logreg/C"]))
        for a in _LOGREG:
            setattr(lr, a, z[f"{name}/logreg/{a}"])
        lr.n_features_in_ = int(lr.coef_.shape[1])
        probes[name] = make_pipeline(sc, lr)
    return probes
