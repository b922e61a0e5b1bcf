"""`maa-eval probe` with corruptor's recipes: the half of the downstream probe that corrupts.

The probe itself (features, classifiers, scores, report) is maa_train.eval.probe; maa_train
does not import corruptor, so the corrupted conditions come in as a ``Corruption`` built here:

- Pinned severity: the recipe's global stage with every node probability set to 1 (every
  image is corrupted), every op's severity replaced by S (its range in the recipe ignored),
  ``one_of`` choices drawn with the recipe's weights from ``rng_for(seed, image ref,
  "global")``, so an image gets the same ops at every severity and only the strength
  changes. The local (mask-region) stage is not applied: it needs a segmentation of each
  test image. A recipe with no global stage is refused.
- Geometry: the image is brought to the recipe's output size and crop before corruption (as
  ``corruptor build`` does; a random crop becomes a centre crop), or kept as decoded
  (``corrupt_size`` native), or to short side N.
- Families: the ops drawn for an image, looked up in corruptor's op registry.
- Reading: corruptor's decoder (the same checks and limits as a build).

    maa-eval probe --model M --train DIR --recipe maa-paper ... --out DIR
    python -m pipelines.probe --model M --train DIR --recipe maa-paper ... --out DIR

``maa-eval`` is installed as :func:`maa_eval`: the mechanism table as before, and ``probe``
with this corruption.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from corruptor.build.decode import DecodeError, decode_image
from corruptor.build.worker import plan_geometry
from corruptor.ops.registry import load_all
from corruptor.recipe.recipe import RecipeError, load_recipe
from maa_train.eval.probe import (CORRUPT_NATIVE, CORRUPT_RECIPE, Corruption, ProbeError, ProbeOptions, ProbeResult,
                                  run_probe as _run_probe)

SEVERITY_RULE = ("every op of the recipe's global stage at exactly severity S (its range in the recipe ignored), "
                 "every node probability set to 1 so every image is corrupted, one_of choices drawn with the "
                 "recipe's weights per image (same ops at every severity); the local (mask-region) stage not applied")


def _pin(node: dict, severity: int) -> dict:
    node = dict(node, p=1.0)
    if "op" in node:
        node["severity"] = severity
    for key in ("chain", "one_of"):
        if key in node:
            node[key] = [_pin(child, severity) for child in node[key]]
    return node


def pinned_recipe(recipe, severity: int):
    """The recipe's global stage with every op at ``severity`` and every probability 1."""
    d = recipe.to_dict()
    if d.get("global") is None:
        raise ProbeError(f"recipe {recipe.name!r} has no global stage; the probe applies the global ops to whole "
                         "images (its local ops need masks): use a recipe with a global section")
    d["global"] = _pin(d["global"], severity)
    d["local"] = None
    d["name"] = f"{recipe.name}@severity{severity}"
    return load_recipe(d)


@dataclass
class _Geometry:
    size: int | None
    crop: str

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.size is None and self.crop == "none":
            return image
        return plan_geometry(image.shape[:2], self.size, self.crop, None).apply(image)


def _geometry(recipe, corrupt_size: int) -> _Geometry:
    out = recipe.output
    crop = "center" if out.crop == "random" else out.crop
    if corrupt_size == CORRUPT_NATIVE:
        return _Geometry(None, "none")
    return _Geometry(out.size if corrupt_size == CORRUPT_RECIPE else corrupt_size, crop)


def _geometry_text(geometry: _Geometry, corrupt_size: int, out) -> str:
    if corrupt_size == CORRUPT_NATIVE:
        return "the decoded size (no resize, no crop)"
    size = f"short side {geometry.size}" if geometry.size else "the decoded size"
    what = f"{size}, {geometry.crop} crop"
    if corrupt_size == CORRUPT_RECIPE:
        return f"the recipe's output geometry ({what})" + (" (its random crop made central)" if out.crop == "random"
                                                            else "")
    return f"{what} (the recipe's output: size {out.size}, crop {out.crop})"


def _skip_reason(exc: Exception) -> str:
    if isinstance(exc, DecodeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def recipe_corruption(recipe: Any, opts: ProbeOptions = ProbeOptions()) -> Corruption:
    """The probe's corrupted conditions from a recipe (YAML path, built-in name, mapping or
    Recipe) at ``opts.severities``; a bad recipe raises ProbeError before any model loads."""
    try:
        base = load_recipe(recipe)
    except RecipeError as exc:
        raise ProbeError(str(exc)) from None
    pinned = {s: pinned_recipe(base, s) for s in opts.severities}
    geometry = _geometry(base, opts.corrupt_size)
    families = {name: op.family for name, op in load_all().items()}

    def read(path: str) -> np.ndarray:
        with open(path, "rb") as fh:
            data = fh.read()
        return np.ascontiguousarray(decode_image(data, max_pixels=opts.max_pixels, min_side=2).image)

    def corrupt(image: np.ndarray, severity: int, key: str) -> tuple[np.ndarray, list[str]]:
        applied = pinned[severity].apply(image, seed=opts.seed, key=key)
        found: list[str] = []
        for op in applied.ops:
            family = families.get(op.get("op"), "unknown op")
            if family not in found:
                found.append(family)
        return applied.image, found

    meta = {"recipe": {"name": base.name, "hash": base.hash}, "severity_rule": SEVERITY_RULE,
            "corruption": {"size": geometry.size, "crop": geometry.crop,
                           "rule": _geometry_text(geometry, opts.corrupt_size, base.output)}}
    return Corruption(read=read, prepare=geometry.apply, corrupt=corrupt, skip_reason=_skip_reason, meta=meta)


def run_probe(model_path: str | Path, train: str | Path, test: str | Path | None, recipe: Any, adapters=(),
              opts: ProbeOptions = ProbeOptions(), *, command: str | None = None) -> ProbeResult:
    """maa_train.eval.probe.run_probe with the recipe's corruption (see the module text)."""
    return _run_probe(model_path, train, test, recipe_corruption(recipe, opts), adapters, opts, command=command)


def maa_eval(argv: list[str] | None = None) -> int:
    """The ``maa-eval`` command: maa_train.eval.cli with this module's corruption for ``probe``."""
    from maa_train.eval.cli import main

    return main(argv, make_corruption=recipe_corruption)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.probe ARGS`` = ``maa-eval probe ARGS``."""
    return maa_eval(["probe", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
