"""`imagecorruptions` 1.1.2 as a second backend, made to run on today's stack and reproducible.

The PyPI release needs four fixes, all kept here and none made to the installed package:

* it imports ``pkg_resources`` (gone with setuptools >= 81) only for ``resource_filename``:
  a tiny stand-in is installed for the duration of the import when the real one is missing;
* ``glass_blur`` and ``gaussian_blur`` pass ``multichannel=`` to scikit-image's ``gaussian``,
  which now spells it ``channel_axis``;
* ``fog`` allocates with ``np.float_``, removed in NumPy 2;
* it draws from NumPy's global RNG and lets ``skimage.util.random_noise`` seed itself.

The corruption functions are re-created from the package's own code objects with a private
globals namespace that carries the fixes, so the imported package itself stays untouched.
Every call runs under a lock with the global RNG seeded from our seed and restored after,
and ``random_noise`` is handed a Generator derived from the same seed.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import numpy as np

from corruptor.ops.registry import IMAGENET_C, UnknownOpError, check_level
from maa_format.rng import derive_seed

# The package refuses images below 32 px per side (`imagecorruptions.corrupt`).
MIN_SIDE = 32

# Ops whose output depends on the seed; the rest are deterministic filters.
RANDOM_OPS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur",
    "motion_blur", "snow", "frost", "fog", "spatter", "elastic_transform",
)


def _pkg_resources_stand_in() -> types.ModuleType:
    module = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        base = os.path.dirname(sys.modules[package].__file__ or "")
        return os.path.normpath(os.path.join(base, resource))

    module.resource_filename = resource_filename  # type: ignore[attr-defined]
    return module


def _pkg_resources_missing() -> bool:
    if "pkg_resources" in sys.modules:
        return sys.modules["pkg_resources"] is None
    return importlib.util.find_spec("pkg_resources") is None


def _import_corruptions() -> types.ModuleType:
    stand_in = _pkg_resources_missing()
    had, saved = "pkg_resources" in sys.modules, sys.modules.get("pkg_resources")
    if stand_in:
        sys.modules["pkg_resources"] = _pkg_resources_stand_in()
    try:
        with warnings.catch_warnings():
            # Its imports trip deprecation notices (pkg_resources, scipy.ndimage.interpolation)
            # that say nothing about our use of it.
            warnings.filterwarnings("ignore", message=".*pkg_resources is deprecated.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            from imagecorruptions import corruptions
    finally:
        if stand_in:  # the functions keep what they bound; leave no fake module behind
            if had:
                sys.modules["pkg_resources"] = saved  # type: ignore[assignment]
            else:
                sys.modules.pop("pkg_resources", None)
    return corruptions


def _shadow(module: types.ModuleType, **overrides: Any) -> types.ModuleType:
    """A module object with the same attributes as ``module`` plus ``overrides``.

    A plain module (not a proxy class) keeps attribute lookups as fast as the original's,
    which matters inside the package's per-pixel Python loops.
    """
    copy = types.ModuleType(module.__name__)
    copy.__dict__.update(module.__dict__)
    copy.__dict__.update(overrides)
    return copy


def _gaussian(image: np.ndarray, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> np.ndarray:
    from skimage.filters import gaussian

    if multichannel is not None:
        kwargs.setdefault("channel_axis", -1 if multichannel else None)
    return gaussian(image, *args, **kwargs)


class _State:
    """The Generator that random_noise draws from during the current (locked) call."""

    noise_rng: np.random.Generator | None = None


def _random_noise(image: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
    from skimage.util import random_noise

    if _State.noise_rng is None:
        raise RuntimeError("random_noise called outside apply_imagecorruptions' seeded context")
    kwargs.setdefault("rng", _State.noise_rng)
    return random_noise(image, *args, **kwargs)


def _build_functions() -> dict[str, Callable[..., Any]]:
    import skimage
    import skimage.color
    import skimage.util

    corruptions = _import_corruptions()
    namespace = dict(corruptions.__dict__)
    namespace.update(
        np=_shadow(np, float_=np.float64),
        sk=_shadow(skimage, util=_shadow(skimage.util, random_noise=_random_noise), color=skimage.color),
        gaussian=_gaussian,
    )
    # Re-create every function of the module against the patched namespace, helpers included,
    # so calls between them (fog -> plasma_fractal) also see the fixes.
    for key, value in corruptions.__dict__.items():
        if isinstance(value, types.FunctionType) and value.__module__ == corruptions.__name__:
            clone = types.FunctionType(value.__code__, namespace, value.__name__,
                                       value.__defaults__, value.__closure__)
            clone.__kwdefaults__ = value.__kwdefaults__
            namespace[key] = clone
    missing = [name for name in IMAGENET_C if name not in namespace]
    if missing:
        raise ImportError(f"imagecorruptions lacks corruptions {missing}")
    return {name: namespace[name] for name in IMAGENET_C}


_FUNCTIONS: dict[str, Callable[..., Any]] | None = None
_BUILD_LOCK = threading.Lock()
_LOCK = threading.Lock()  # one call at a time: they share NumPy's global RNG


def _functions() -> dict[str, Callable[..., Any]]:
    global _FUNCTIONS
    with _BUILD_LOCK:
        if _FUNCTIONS is None:
            _FUNCTIONS = _build_functions()
    return _FUNCTIONS


@contextmanager
def _seeded(seed: int, name: str) -> Iterator[None]:
    """Global RNG seeded from (seed, name) for the duration; the caller's state is restored."""
    legacy, noise = np.random.SeedSequence(derive_seed(seed, "", "imagecorruptions", name)).spawn(2)
    with _LOCK:
        saved = np.random.get_state()
        np.random.set_state(np.random.RandomState(np.random.MT19937(legacy)).get_state())
        _State.noise_rng = np.random.default_rng(noise)
        try:
            yield
        finally:
            _State.noise_rng = None
            np.random.set_state(saved)


def _pad_to_min(image: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    h, w = image.shape[:2]
    dh, dw = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    if dh == 0 and dw == 0:
        return image, (slice(None), slice(None))
    top, left = dh // 2, dw // 2
    padded = np.pad(image, ((top, dh - top), (left, dw - left), (0, 0)), mode="reflect")
    return padded, (slice(top, top + h), slice(left, left + w))


def apply_imagecorruptions(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt a uint8 RGB image with the original `imagecorruptions` function ``name``.

    Same (image, name, severity, seed) gives byte-identical output in any process. Images
    below 32 px per side are reflect-padded for the call and cropped back.
    """
    if name not in IMAGENET_C:
        raise UnknownOpError(f"unknown imagecorruptions op '{name}'; allowed: {', '.join(IMAGENET_C)}")
    check_level(severity, name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ValueError(f"image must be uint8 H x W x 3 with H, W >= 1, got {arr.dtype} {arr.shape}")
    from PIL import Image

    fn = _functions()[name]
    padded, crop = _pad_to_min(arr)
    # spatter normalises its drop layer by the layer's maximum: 0/0 when no drop crosses the
    # threshold (happens on small images). Those pixels carry no spatter, so they keep the input.
    no_drops = np.errstate(invalid="ignore") if name == "spatter" else nullcontext()
    with _seeded(seed, name), no_drops:
        result = fn(Image.fromarray(np.ascontiguousarray(padded)), int(severity))
    out = np.asarray(result)
    if out.dtype != np.uint8:
        if name == "spatter":
            out = np.where(np.isnan(out), padded, out)
        # The package's own `corrupt` truncates its float output with np.uint8; do the same.
        out = np.clip(out, 0, 255).astype(np.uint8)
    out = out[crop]
    if out.shape != arr.shape:
        raise RuntimeError(f"imagecorruptions '{name}' returned shape {out.shape} for input {arr.shape}")
    return np.ascontiguousarray(out)
