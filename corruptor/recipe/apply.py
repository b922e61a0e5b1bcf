"""Applying a recipe to one image, and replaying the record it leaves.

Randomness: the global stage draws its choices from ``rng_for(seed, key, "global")``,
the local stage from ``rng_for(seed, key, "local")``; each applied op draws its params
from its own stream, so the output depends only on (image, recipe, seed, key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Sequence

import numpy as np

from corruptor.build.image import to_rgb_uint8
from corruptor.ops.registry import LEVELS
from corruptor.ops.step import replay_op, run_op
from corruptor.recipe import local as local_stage
from corruptor.recipe.nodes import ChainNode, OpNode
from maa_format.rng import rng_for

if TYPE_CHECKING:
    from corruptor.recipe.schema import Recipe

Masks = Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]]


@dataclass
class Applied:
    """What applying a recipe did: the image plus the provenance record."""

    image: np.ndarray
    ops: list[dict] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)
    mask: np.ndarray | None = None
    status: Literal["ok", "skipped"] = "ok"
    note: str = ""
    local_order: Literal["after", "before"] = "after"

    def record(self) -> dict:
        """JSON-ready provenance; ``replay(clean, record)`` reproduces ``image``."""
        return {"ops": self.ops, "regions": self.regions, "status": self.status, "note": self.note,
                "local_order": self.local_order}


def apply_recipe(recipe: "Recipe", image: np.ndarray, *, seed: int, key: str, masks: Masks | None = None,
                 kind: str | None = None) -> Applied:
    """`Recipe.apply`: the stages of source ``kind`` (when given) on ``image``."""
    if recipe.kinds or kind is not None:
        staged = recipe.for_kind(kind)
        if staged is not recipe:
            return apply_recipe(staged, image, seed=seed, key=key, masks=masks)
    image = to_rgb_uint8(image)
    regions, note = pick_regions(recipe, image, masks, seed, key)
    if regions is None:
        return Applied(image=image, status="skipped", note=note, local_order=recipe.local_order)
    applied = Applied(image=image, note=note, local_order=recipe.local_order)

    def global_stage() -> None:
        if recipe.global_ is not None:
            applied.image, applied.ops = run_node(recipe.global_, applied.image, rng_for(seed, key, "global"),
                                                  (seed, key, "global"), recipe.backend)

    def local_stage_run() -> None:
        def run_ops(img: np.ndarray, j: int) -> tuple[np.ndarray, list[dict]]:
            stream = (seed, key, "local", f"region{j}")
            return run_node(recipe.local.ops, img, rng_for(*stream), stream, recipe.backend)

        applied.image, applied.regions, applied.mask = local_stage.apply_regions(
            applied.image, regions, recipe.local.feather, run_ops)

    stages = [global_stage, local_stage_run] if recipe.local_order == "after" else [local_stage_run, global_stage]
    for stage in stages:
        if stage is global_stage or regions:
            stage()
    return applied


def pick_regions(recipe: "Recipe", image: np.ndarray, masks: Masks | None, seed: int,
                 key: str) -> tuple[list[np.ndarray] | None, str]:
    """(the regions the local stage runs in, a note); no regions when it does not run,
    None when the sample is skipped (no region fits and the fallback is ``skip``)."""
    if recipe.local is None:
        return [], ""
    if masks is None:
        raise ValueError(f"recipe '{recipe.name}' has a local stage: pass masks= "
                         "(a list of H x W bool arrays, possibly empty)")
    if not callable(masks):
        masks = local_stage.check_masks(masks, image.shape[:2])
    local_rng = rng_for(seed, key, "local")
    if local_rng.random() >= recipe.local.p:
        return [], ""
    if callable(masks):   # computed only now: the local stage runs
        masks = local_stage.check_masks(masks(), image.shape[:2])
    picked = local_stage.select_regions(masks, recipe.local.area, recipe.local.regions, local_rng)
    if picked:
        return [masks[i] for i in picked], ""
    lo, hi = recipe.local.area
    note = f"no region in area range [{lo}, {hi}] among {len(masks)} candidates"
    return (None if recipe.local.fallback == "skip" else []), note


def run_node(node: Any, image: np.ndarray, rng: np.random.Generator, stream: tuple,
             backend: str) -> tuple[np.ndarray, list[dict]]:
    """Run the ops ``plan(node, rng)`` picks; op ``i`` draws its params from ``(*stream, "params", i)``."""
    records: list[dict] = []
    for name, level, overrides in plan(node, rng):
        params_rng = rng_for(*stream, "params", str(len(records)))
        image, record = run_op(image, name, level, params_rng, backend=backend, overrides=overrides)
        records.append(record)
    return image, records


def plan(node: Any, rng: np.random.Generator) -> list[tuple[str, int, dict]]:
    """Walk a node: draw each ``p``, each ``one_of`` choice and each severity from ``rng``.

    Every node draws its ``p`` even when it is 1, so editing one probability does not
    shift the draws of unrelated nodes.
    """
    if rng.random() >= node.p:
        return []
    if isinstance(node, OpNode):
        return [(node.op, _draw_severity(node.severity, rng), dict(node.params))]
    if isinstance(node, ChainNode):
        return [step for child in node.chain for step in plan(child, rng)]
    weights = np.array([child.weight for child in node.one_of], dtype=np.float64)
    choice = int(rng.choice(len(node.one_of), p=weights / weights.sum()))
    return plan(node.one_of[choice], rng)


def _draw_severity(severity: Any, rng: np.random.Generator) -> int:
    if isinstance(severity, int):
        return severity
    if isinstance(severity, tuple):
        return int(rng.integers(severity[0], severity[1] + 1))
    w = np.array(severity.weights, dtype=np.float64)
    return int(rng.choice(len(LEVELS), p=w / w.sum())) + 1


def replay(image: np.ndarray, record: Mapping[str, Any] | Applied) -> np.ndarray:
    """Re-apply a provenance record (``Applied`` or its ``record()``) to the clean image."""
    if isinstance(record, Applied):
        record = record.record()
    image = to_rgb_uint8(image)
    if record.get("status") == "skipped":
        return image

    def global_stage(img: np.ndarray) -> np.ndarray:
        for op in record["ops"]:
            img = replay_op(img, op)
        return img

    def regions_stage(img: np.ndarray) -> np.ndarray:
        return local_stage.replay_regions(img, record["regions"])

    order = [global_stage, regions_stage] if record.get("local_order", "after") == "after" \
        else [regions_stage, global_stage]
    for stage in order:
        image = stage(image)
    return image
