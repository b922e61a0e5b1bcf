"""The op registry: a dict of named corruptions and the decorator that fills it.

An op is a pure function ``fn(image, params) -> image`` on uint8 RGB arrays (H x W x 3,
any size from 1x1), plus a declared severity table (levels 1..5) and a sampler that
turns (rng, level, (h, w)) into the params dict. All randomness an op needs is in its
params (a ``seed`` entry for noise fields), so applying an op is deterministic.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from maa_format.rng import child_seed

Params = dict[str, Any]
OpFn = Callable[[np.ndarray, Params], np.ndarray]
Sampler = Callable[[np.random.Generator, int, tuple[int, int]], Params]

LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Op:
    name: str
    family: str
    fn: OpFn
    severities: tuple[Any, ...]
    sample: Sampler
    suites: tuple[str, ...] = ()
    doc: str = field(default="", compare=False)

    def params(self, rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
        check_level(level, self.name)
        return self.sample(rng, level, shape)

    def override_keys(self) -> tuple[str, ...]:
        """Names a recipe may override: the keys the sampler produces."""
        return tuple(sorted(self.sample(np.random.default_rng(0), 1, (64, 64))))


OPS: dict[str, Op] = {}

# Modules whose import registers ops. Order is the listing order of `corruptor list`.
OP_MODULES: tuple[str, ...] = (
    "corruptor.ops.noise",
    "corruptor.ops.blur",
    "corruptor.ops.weather",
    "corruptor.ops.digital",
    "corruptor.ops.photometric",
    "corruptor.ops.resolution",
    "corruptor.ops.compression",
    "corruptor.ops.atmosphere",
    "corruptor.ops.realesrgan",
    "corruptor.ops.scan",
)

# The 19 corruptions of ImageNet-C as packaged by `imagecorruptions`, in its order.
IMAGENET_C: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise",
    "gaussian_blur", "spatter", "saturate",
)


class UnknownOpError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class SeverityError(ValueError):
    pass


def check_level(level: int, name: str) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in LEVELS:
        raise SeverityError(f"severity of '{name}' must be an integer in 1..5, got {level!r}")


def table_sampler(table: Sequence[Mapping[str, Any]], *, seeded: bool = False) -> Sampler:
    """Sampler that returns the table row of the level, plus a noise seed when ``seeded``."""

    def sample(rng: np.random.Generator, level: int, shape: tuple[int, int]) -> Params:
        params = dict(table[level - 1])
        if seeded:
            params["seed"] = child_seed(rng)
        return params

    return sample


def register(name: str, *, family: str, severities: Sequence[Any], sampler: Sampler,
             suites: Sequence[str] = ()) -> Callable[[OpFn], OpFn]:
    if len(severities) != len(LEVELS):
        raise ValueError(f"op '{name}' declares {len(severities)} severity levels, expected 5")

    def deco(fn: OpFn) -> OpFn:
        if name in OPS:
            raise ValueError(f"op '{name}' registered twice")
        OPS[name] = Op(name, family, fn, tuple(severities), sampler, tuple(suites),
                       (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


_loaded = False


def load_all() -> dict[str, Op]:
    global _loaded
    if not _loaded:
        for module in OP_MODULES:
            importlib.import_module(module)
        _loaded = True
    return OPS


def get_op(name: str) -> Op:
    ops = load_all()
    if name not in ops:
        raise UnknownOpError(f"unknown op '{name}'; allowed: {', '.join(sorted(ops))}")
    return ops[name]
