"""One op applied to one image: the unit that recipes, the local stage and `corrupt` share.

A step draws the op's parameters from an explicit generator, applies the op with the
chosen backend and returns the provenance record ``{"op", "severity", "params",
"backend"}``. Parameters are passed through JSON before the op sees them, so replaying
a record read back from a JSON file gives byte-identical output.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from corruptor.ops.registry import IMAGENET_C, check_level, get_op
from maa_format.rng import child_seed

BACKENDS: tuple[str, ...] = ("native", "imagecorruptions")


class BackendError(ValueError):
    pass


def check_backend(backend: str, name: str) -> None:
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend '{backend}'; allowed: {', '.join(BACKENDS)}")
    if backend == "imagecorruptions" and name not in IMAGENET_C:
        raise BackendError(f"op '{name}' has no imagecorruptions backend; "
                           f"allowed with it: {', '.join(IMAGENET_C)}")


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"parameter value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(params), default=_json_value, sort_keys=True))


def run_op(image: np.ndarray, name: str, severity: int, rng: np.random.Generator, *,
           backend: str = "native", overrides: Mapping[str, Any] | None = None) -> tuple[np.ndarray, dict]:
    """Sample params for ``name`` at ``severity`` from ``rng``, apply, return (image, record)."""
    check_level(severity, name)
    check_backend(backend, name)
    if backend == "native":
        params = get_op(name).params(rng, int(severity), image.shape[:2])
        if overrides:
            params.update(overrides)
    else:
        if overrides:
            raise BackendError(f"op '{name}': parameter overrides need backend native; "
                               "imagecorruptions takes only a severity")
        params = {"seed": child_seed(rng)}
    record = {"op": name, "severity": int(severity), "params": jsonable(params), "backend": backend}
    return replay_op(image, record), record


def replay_op(image: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """Apply a recorded step again: the record alone determines the output."""
    name, severity, params = record["op"], int(record["severity"]), dict(record["params"])
    backend = record.get("backend", "native")
    check_backend(backend, name)
    if backend == "native":
        out = get_op(name).fn(image, params)
    else:
        from corruptor.ops.imagecorruptions_compat import apply_imagecorruptions

        out = apply_imagecorruptions(image, name, severity, int(params["seed"]))
    if out.shape != image.shape or out.dtype != np.uint8:
        raise RuntimeError(f"op '{name}' returned {out.dtype} {out.shape} for a uint8 {image.shape} input")
    return out
