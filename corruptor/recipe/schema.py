"""The recipe schema: which ops to apply, how often, how hard, and what the build writes.

A recipe has an optional global node, an optional local section (ops inside mask regions,
see corruptor.recipe.local) and the output spec the build uses to resize, crop and
encode. An optional ``kinds`` section gives a source kind (``photo``, ``web``, ``ocr``:
the kinds ``--source-kind`` accepts) its own ``global`` and/or ``local`` stage, replacing
the recipe's for samples of that kind; a recipe without it is unchanged, in output and
in hash. Nodes are in corruptor.recipe.nodes, applying in corruptor.recipe.apply.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

import numpy as np
from pydantic import Field, field_validator, model_validator

from corruptor.ops.registry import IMAGENET_C
from corruptor.recipe.apply import Applied, Masks, apply_recipe
from corruptor.recipe.nodes import Node, OpNode, StrictModel
from corruptor.recipe.stages import STAGES, KindStages, LocalSpec, OutputSpec
from corruptor.sources.spec import KINDS as SOURCE_KINDS
from maa_format.io import content_hash


class Recipe(StrictModel):
    name: str
    description: str = ""
    backend: Literal["native", "imagecorruptions"] = "native"
    output: OutputSpec = OutputSpec()
    global_: Node | None = Field(default=None, alias="global")
    local: LocalSpec | None = None
    local_order: Literal["after", "before"] = "after"
    kinds: dict[str, KindStages] | None = None

    @field_validator("kinds", mode="before")
    @classmethod
    def _known_kinds(cls, kinds: Any) -> Any:
        if isinstance(kinds, Mapping):
            unknown = [k for k in kinds if k not in SOURCE_KINDS]
            if unknown:
                raise ValueError(f"unknown source kind '{unknown[0]}'; allowed: {', '.join(SOURCE_KINDS)} "
                                 "(the kinds --source-kind accepts)")
        return kinds

    @model_validator(mode="after")
    def _backend_covers_ops(self) -> "Recipe":
        if self.backend == "imagecorruptions":
            for path, node in self.op_nodes():
                if node.op not in IMAGENET_C:
                    raise ValueError(f"op '{node.op}' at {path} has no imagecorruptions backend; "
                                     f"allowed: {', '.join(IMAGENET_C)}")
                if node.params:
                    raise ValueError(f"params at {path}: overrides need backend native")
        return self

    # -------------------------------------------------------- description

    def op_nodes(self) -> list[tuple[str, OpNode]]:
        """Every op node with its field path, e.g. ``("recipe.global.one_of[2]", node)``."""
        found: list[tuple[str, OpNode]] = []

        def walk(node: Any, path: str) -> None:
            if isinstance(node, OpNode):
                found.append((path, node))
            for key in ("chain", "one_of"):
                for i, child in enumerate(getattr(node, key, None) or ()):
                    walk(child, f"{path}.{key}[{i}]")

        if self.global_ is not None:
            walk(self.global_, "recipe.global")
        if self.local is not None:
            walk(self.local.ops, "recipe.local.ops")
        for kind, stages in (self.kinds or {}).items():
            if stages.global_ is not None:
                walk(stages.global_, f"recipe.kinds.{kind}.global")
            if stages.local is not None:
                walk(stages.local.ops, f"recipe.kinds.{kind}.local.ops")
        return found

    def to_dict(self) -> dict:
        """Canonical resolved form: every default filled in, JSON types only. Without a
        ``kinds`` section there is no ``kinds`` key, so older recipes keep their hash."""
        d = self.model_dump(mode="json", by_alias=True, exclude={"kinds"})
        if self.kinds:
            d["kinds"] = {kind: self.kinds[kind].to_dict() for kind in sorted(self.kinds)}
        return d

    # -------------------------------------------------------- source kinds

    def stage_paths(self, kind: str | None = None) -> dict[str, str | None]:
        """Which stages a sample of source ``kind`` gets, as field paths
        (``{"global": "recipe.kinds.ocr.global", "local": "recipe.local"}``); None: no such stage."""
        stages = (self.kinds or {}).get(kind) if kind is not None else None
        replaced = stages.replaced() if stages is not None else ()
        own = {"global": self.global_ is not None, "local": self.local is not None}
        out: dict[str, str | None] = {}
        for stage in STAGES:
            if stage in replaced:
                node = stages.global_ if stage == "global" else stages.local
                out[stage] = f"recipe.kinds.{kind}.{stage}" if node is not None else None
            else:
                out[stage] = f"recipe.{stage}" if own[stage] else None
        return out

    def stage_set(self, kind: str | None = None) -> str:
        """``kind`` when the recipe gives that source kind its own stages, else ``"default"``."""
        return kind if kind is not None and kind in (self.kinds or {}) else "default"

    def for_kind(self, kind: str | None) -> "Recipe":
        """The recipe a sample of source ``kind`` gets: the kind's stages in place of the
        recipe's, no ``kinds`` section. Itself when the recipe has no ``kinds``."""
        if kind is not None and kind not in SOURCE_KINDS:
            raise ValueError(f"source kind '{kind}' not allowed; allowed: {', '.join(SOURCE_KINDS)}")
        if not self.kinds:
            return self
        stages = self.kinds.get(kind) if kind is not None else None
        update: dict[str, Any] = {"kinds": None}
        if stages is None:
            return self.model_copy(update=update)
        if "global" in stages.replaced():
            update["global_"] = stages.global_
        if "local" in stages.replaced():
            update["local"] = stages.local
        return self.model_copy(update=update)

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex) of the canonical form without ``name`` and ``description``:
        renaming or re-describing a recipe does not change the data it makes."""
        body = {k: v for k, v in self.to_dict().items() if k not in ("name", "description")}
        return content_hash(body)

    @property
    def needs_masks(self) -> bool:
        """True when any source kind can get a local stage."""
        return any(self.needs_masks_for(kind) for kind in (None, *SOURCE_KINDS))

    def needs_masks_for(self, kind: str | None) -> bool:
        return self.stage_paths(kind)["local"] is not None

    # -------------------------------------------------------- application

    def apply(self, image: np.ndarray, *, seed: int, key: str, masks: Masks | None = None,
              kind: str | None = None) -> Applied:
        """Apply the recipe (the stages of source ``kind`` when given). ``masks`` are the
        candidate regions, or a callable returning them that is called only when the
        local stage runs."""
        return apply_recipe(self, image, seed=seed, key=key, masks=masks, kind=kind)
