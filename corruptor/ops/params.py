"""Reading an op's params dict: each value checked once, errors naming the op, field and range."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


def _value(params: Mapping[str, Any], key: str, op: str) -> Any:
    if key not in params:
        raise ValueError(f"{op}: missing parameter '{key}'")
    return params[key]


def _range_text(low: float, high: float, low_open: bool) -> str:
    return f"{'(' if low_open else '['}{low}, {high}]"


def number(params: Mapping[str, Any], key: str, op: str, *, low: float = -math.inf,
           high: float = math.inf, low_open: bool = False) -> float:
    """A finite real in [low, high] (or (low, high] with ``low_open``)."""
    value = _value(params, key, op)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{op}: parameter '{key}' must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        raise ValueError(f"{op}: parameter '{key}' must be in {_range_text(low, high, low_open)}, "
                         f"got {value!r}")
    return value


def integer(params: Mapping[str, Any], key: str, op: str, *, low: int, high: int) -> int:
    """An integer in [low, high]; integral floats such as 3.0 are accepted."""
    value = _value(params, key, op)
    integral_float = (isinstance(value, (float, np.floating)) and math.isfinite(value)
                      and float(value).is_integer())
    ok_type = isinstance(value, (int, np.integer)) or integral_float
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        raise ValueError(f"{op}: parameter '{key}' must be an integer in [{low}, {high}], "
                         f"got {value!r}")
    return int(value)


def generator(params: Mapping[str, Any], op: str) -> np.random.Generator:
    """The Generator of the op's noise field, from its ``seed`` parameter."""
    seed = _value(params, "seed", op)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{op}: parameter 'seed' must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed))
