"""A checkpoint's training state without pickle: tensors in safetensors, the rest in JSON.

The state (optimiser and scheduler state dicts, RNG states, loader position, step, best
score, counters) is a tree of dicts, lists, tuples, numbers, strings, tensors and NumPy
arrays. It is written as two files:

    state.safetensors   every tensor of the tree (optimiser moments, RNG states), on the CPU
    state.json          the tree, each tensor replaced by {"__tensor__": "<name>"}

Python's JSON writes floats with ``repr`` (shortest round-trip) and keeps ints exact, so a
resumed run gets bit-identical numbers. Types JSON lacks are tagged with one-key objects:
``{"__tuple__": [...]}`` (Python's random state and Adam's betas stay tuples),
``{"__items__": [[key, value], ...]}`` (a dict with non-string keys, like an optimiser's
``state`` keyed by parameter index) and ``{"__ndarray__": {"dtype", "shape", "data"}}``
(NumPy's RNG key, numeric dtypes only). Loading parses JSON and safetensors only: nothing in
a checkpoint can make it run code. Anything else in the tree is refused when *saving*, naming
its place (``rng.numpy[1]``), so an unsupported object shows up the first time a run
checkpoints, not when it resumes.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maa_train.students.safe_load import WeightFileError, load_safetensors

FORMAT = "maa-train-state/1"
JSON_NAME = "state.json"
TENSORS_NAME = "state.safetensors"
LEGACY_NAME = "state.pt"
_TENSOR, _NDARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"
_TAGS = (_TENSOR, _NDARRAY, _TUPLE, _ITEMS)
_ARRAY_KINDS = "biuf"  # bool, int, uint, float: never object arrays


class StateFormatError(WeightFileError):
    """A state file that is not what this module writes, or an old pickled ``state.pt``."""


class _Encoder:
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.storages: set[int] = set()

    def tensor(self, obj: torch.Tensor) -> dict:
        name = f"t{len(self.tensors):06d}"
        t = obj.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr in self.storages:
            t = t.clone()  # safetensors refuses two entries on one storage
        elif ptr is not None:
            self.storages.add(ptr)
        self.tensors[name] = t
        return {_TENSOR: name}

    def __call__(self, obj: Any, where: str) -> Any:
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, torch.Tensor):
            return self.tensor(obj)
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in _ARRAY_KINDS:
                raise TypeError(f"{where}: NumPy arrays of dtype {obj.dtype} cannot be saved (numeric only)")
            return {_NDARRAY: {"dtype": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}}
        if isinstance(obj, np.generic) and obj.dtype.kind in _ARRAY_KINDS:
            return obj.item()
        if isinstance(obj, tuple):
            return {_TUPLE: [self(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj) and not (len(obj) == 1 and next(iter(obj)) in _TAGS):
                return {k: self(v, f"{where}.{k}") for k, v in obj.items()}
            return {_ITEMS: [[self(k, f"{where}.<key>"), self(v, f"{where}[{k!r}]")] for k, v in obj.items()]}
        raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be saved in a "
                        "training state (tensors, arrays, numbers, strings, lists, tuples and dicts only)")


def encode(obj: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """``obj`` as JSON-able data; its tensors are moved into ``tensors`` (CPU, contiguous)."""
    return _Encoder(tensors)(obj, where)


def decode(doc: Any, tensors: dict[str, torch.Tensor], where: str = "state", file: str = JSON_NAME) -> Any:
    """The tree `encode` made, back; a malformed tag is a `StateFormatError` naming its place."""
    def bad(problem: str) -> StateFormatError:
        return StateFormatError(f"{file}: {where}: {problem}")

    if doc is None or isinstance(doc, (bool, int, float, str)):
        return doc
    if isinstance(doc, list):
        return [decode(v, tensors, f"{where}[{i}]", file) for i, v in enumerate(doc)]
    if not isinstance(doc, dict):
        raise bad(f"unexpected {type(doc).__name__}")
    if len(doc) != 1 or next(iter(doc)) not in _TAGS:
        return {k: decode(v, tensors, f"{where}.{k}", file) for k, v in doc.items()}
    tag, value = next(iter(doc.items()))
    if tag == _TENSOR:
        if not isinstance(value, str) or value not in tensors:
            raise bad(f"names tensor {value!r}, which {TENSORS_NAME} does not hold")
        return tensors[value]
    if tag == _TUPLE:
        if not isinstance(value, list):
            raise bad("a tuple must hold a list")
        return tuple(decode(v, tensors, f"{where}[{i}]", file) for i, v in enumerate(value))
    if tag == _ITEMS:
        if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
            raise bad("a mapping must hold [key, value] pairs")
        out = {}
        for k, v in value:
            key = decode(k, tensors, f"{where}.<key>", file)
            if isinstance(key, (list, dict)):
                raise bad(f"unhashable key {key!r}")
            out[key] = decode(v, tensors, f"{where}[{key!r}]", file)
        return out
    # _NDARRAY
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data"}:
        raise bad("an array must hold dtype, shape and data")
    try:
        dtype = np.dtype(value["dtype"])
    except TypeError:
        raise bad(f"unknown dtype {value['dtype']!r}") from None
    shape = value["shape"]
    if dtype.kind not in _ARRAY_KINDS or not isinstance(shape, list) or not all(
            isinstance(n, int) and n >= 0 for n in shape) or not isinstance(value["data"], list):
        raise bad(f"not a numeric array (dtype {dtype}, shape {shape!r})")
    if math.prod(shape) != len(value["data"]):
        raise bad(f"shape {shape} does not match {len(value['data'])} values")
    try:
        return np.asarray(value["data"], dtype=dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad(f"array values do not fit dtype {dtype}: {exc}") from None


def save_state(folder: str | os.PathLike, state: dict) -> None:
    """Write ``state`` as state.safetensors + state.json into ``folder`` (a checkpoint being built)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    doc = {"format": FORMAT, "state": encode(state, tensors)}
    save_file(tensors, str(folder / TENSORS_NAME), metadata={"format": FORMAT})
    # allow_nan: the best score starts at inf; Python reads its Infinity/NaN back exactly.
    (folder / JSON_NAME).write_text(json.dumps(doc, allow_nan=True))


def load_state(folder: str | os.PathLike) -> dict:
    """The state `save_state` wrote. A checkpoint from before this format (a pickled ``state.pt``)
    is refused with a `StateFormatError` saying so: it is never unpickled."""
    folder = Path(folder)
    json_path = folder / JSON_NAME
    if not json_path.exists():
        if (folder / LEGACY_NAME).exists():
            raise StateFormatError(
                f"{folder / LEGACY_NAME}: a training state in the old pickle format; it is not loaded because "
                f"unpickling a file can run code; resume from a checkpoint written by this version "
                f"(state.json + state.safetensors) or start the run again")
        raise FileNotFoundError(f"{json_path} not found: not a complete training checkpoint")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StateFormatError(f"{json_path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("state"), dict):
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise StateFormatError(f"{json_path}: format {found!r} is not {FORMAT!r}")
    tensors = load_safetensors(folder / TENSORS_NAME, "training state tensors")
    try:
        return decode(doc["state"], tensors, file=str(json_path))
    except RecursionError:
        raise StateFormatError(f"{json_path}: nested too deeply to be a training state") from None


__all__ = ["FORMAT", "JSON_NAME", "LEGACY_NAME", "StateFormatError", "TENSORS_NAME", "decode", "encode",
           "load_state", "save_state"]
