"""Recipes: YAML files validated into typed config that say which ops to apply, how often, how hard.

A node is an op (``{op, p, severity, params, weight}``), a ``chain`` of nodes applied
in order, or a weighted ``one_of``. A recipe has an optional global node, an optional
local section (ops inside mask regions, see corruptor.recipe.local) and the output spec the
build uses to resize, crop and encode. An optional ``kinds`` section gives a source kind
(``photo``, ``web``, ``ocr``: the kinds ``--source-kind`` accepts) its own ``global``
and/or ``local`` stage, replacing the recipe's for samples of that kind; a recipe without
it is unchanged, in output and in hash. Validation happens once, at load, and every
error names its field path and the allowed values.

Randomness: the global stage draws its choices from ``rng_for(seed, key, "global")``,
the local stage from ``rng_for(seed, key, "local")``; each applied op draws its params
from its own stream, so the output depends only on (image, recipe, seed, key).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Sequence, Union

import numpy as np
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from corruptor.recipe import local as local_stage
from corruptor.build.image import to_rgb_uint8
from corruptor.ops.registry import IMAGENET_C, LEVELS, UnknownOpError, get_op
from corruptor.sources.sources import KINDS as SOURCE_KINDS
from maa_format.io import content_hash
from maa_format.rng import rng_for
from maa_format.safe_yaml import YamlLoadError, load_file
from corruptor.ops.step import replay_op, run_op

BUILTIN_DIR = Path(__file__).parent / "builtin"  # package data: corruptor needs no other package


class RecipeError(ValueError):
    """A recipe that cannot be loaded; the message names each bad field and what is allowed."""


class _Strict(BaseModel):
    # No inf/NaN anywhere: `weight: .inf` would turn every one_of probability into NaN and
    # fail every sample of a build (a silent 0-pair dataset); refused here, naming the field.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = [f.alias or name for name, f in cls.model_fields.items()]
            unknown = [k for k in data if k not in allowed and k not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown key '{unknown[0]}'; allowed: {', '.join(allowed)}")
        return data


# ---------------------------------------------------------------- nodes

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# Capped so that a one_of's sum of weights stays finite (1e308 + 1e308 overflows to inf).
MAX_WEIGHT = 1e6
Weight = Annotated[float, Field(gt=0.0, le=MAX_WEIGHT, allow_inf_nan=False)]

SEVERITY_FORMS = ("an integer 1..5", "a range [lo, hi] with 1 <= lo <= hi <= 5",
                  "{weights: [w1, w2, w3, w4, w5]}")


class SeverityWeights(_Strict):
    weights: list[float]

    @field_validator("weights")
    @classmethod
    def _positive(cls, w: list[float]) -> list[float]:
        if len(w) != len(LEVELS):
            raise ValueError(f"severity weights need one weight per level 1..5 (5 numbers), got {len(w)}")
        if not all(np.isfinite(x) and x <= MAX_WEIGHT for x in w) or min(w) < 0 or sum(w) <= 0:
            raise ValueError(f"severity weights must be finite numbers in [0, {MAX_WEIGHT:g}] with a positive sum, "
                             f"got {list(w)}")
        return w


def _level(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in LEVELS


def _severity_tag(value: Any) -> str:
    if isinstance(value, (Mapping, SeverityWeights)):
        return "<weights>"
    return "<range>" if isinstance(value, (list, tuple)) else "<level>"


Severity = Annotated[
    Union[Annotated[int, Tag("<level>")], Annotated[tuple[int, int], Tag("<range>")],
          Annotated[SeverityWeights, Tag("<weights>")]],
    Discriminator(_severity_tag),
]


class OpNode(_Strict):
    op: str
    p: Probability = 1.0
    severity: Severity = 3
    params: dict[str, Any] = Field(default_factory=dict)
    weight: Weight = 1.0

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"op": data} if isinstance(data, str) else data

    @field_validator("op")
    @classmethod
    def _known_op(cls, name: str, info: ValidationInfo) -> str:
        backend = (info.context or {}).get("backend", "native")
        if backend == "imagecorruptions":
            if name not in IMAGENET_C:
                raise ValueError(f"op '{name}' has no imagecorruptions backend; "
                                 f"allowed with backend imagecorruptions: {', '.join(IMAGENET_C)}")
            return name
        try:
            get_op(name)
        except UnknownOpError as exc:
            raise ValueError(str(exc)) from None
        return name

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        if _level(value):
            return value
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_level, value)) \
                and value[0] <= value[1]:
            return tuple(value)
        if isinstance(value, Mapping):
            return value  # validated as SeverityWeights
        raise ValueError(f"severity must be {', '.join(SEVERITY_FORMS[:2])} or {SEVERITY_FORMS[2]}; "
                         f"got {value!r}")

    @field_validator("params")
    @classmethod
    def _overrides(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("op")
        if not params or name is None:
            return params
        if (info.context or {}).get("backend", "native") != "native":
            raise ValueError("parameter overrides need backend native; imagecorruptions takes only a severity")
        op = get_op(name)
        allowed = op.override_keys()
        sample = op.params(np.random.default_rng(0), 1, (64, 64))  # as override_keys() samples
        for key, value in params.items():
            if key not in allowed:
                raise ValueError(f"unknown parameter '{key}' for op '{name}'; allowed: {', '.join(allowed)}")
            _check_kind(name, key, value, sample[key])
        try:  # a bad value fails here, on a tiny image, before any real work
            run_op(np.full((16, 16, 3), 128, np.uint8), name, 1, np.random.default_rng(0), overrides=params)
        except Exception as exc:
            raise ValueError(f"op '{name}' rejects params {params}: {exc}") from None
        return params


def _check_kind(name: str, key: str, value: Any, default: Any) -> None:
    def kind(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "boolean"
        if isinstance(v, (int, float, np.integer, np.floating)):
            return "number"
        if isinstance(v, str):
            return "string"
        if isinstance(v, (list, tuple)):
            return "list"
        return type(v).__name__

    if kind(value) != kind(default):
        raise ValueError(f"parameter '{key}' of op '{name}' must be a {kind(default)} "
                         f"(like {default!r}), got {value!r}")


class ChainNode(_Strict):
    chain: list["Node"] = Field(min_length=1)
    p: Probability = 1.0
    weight: Weight = 1.0


class OneOfNode(_Strict):
    one_of: list["Node"] = Field(min_length=1)
    p: Probability = 1.0
    weight: Weight = 1.0


NODE_KEYS = ("op", "chain", "one_of")
_TAGS = {"op": "<op>", "chain": "<chain>", "one_of": "<one_of>"}


def _node_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return _TAGS["op"]
    if isinstance(value, BaseModel):
        return {OpNode: "<op>", ChainNode: "<chain>", OneOfNode: "<one_of>"}.get(type(value))
    if isinstance(value, Mapping):
        for key in NODE_KEYS:
            if key in value:
                return _TAGS[key]
    return None


Node = Annotated[
    Union[Annotated[OpNode, Tag("<op>")], Annotated[ChainNode, Tag("<chain>")],
          Annotated[OneOfNode, Tag("<one_of>")]],
    Discriminator(_node_tag, custom_error_type="invalid_node",
                  custom_error_message="a node must be an op name or a mapping with one of the keys "
                                       "'op', 'chain', 'one_of'"),
]
ChainNode.model_rebuild()
OneOfNode.model_rebuild()


# ---------------------------------------------------------------- recipe

class OutputSpec(_Strict):
    size: Annotated[int, Field(ge=1)] | None = None
    crop: Literal["center", "random", "none"] = "center"
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: Annotated[int, Field(ge=1, le=100)] = 95


class LocalSpec(_Strict):
    p: Probability = 1.0
    regions: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (1, 3)
    area: tuple[Probability, Probability] = (0.02, 0.5)
    feather: Annotated[float, Field(ge=0.0)] = 8.0
    ops: Node
    fallback: Literal["global_only", "skip"] = "global_only"

    @field_validator("regions", "area")
    @classmethod
    def _ordered(cls, value: tuple, info: ValidationInfo) -> tuple:
        if value[0] > value[1]:
            raise ValueError(f"{info.field_name} must be [min, max] with min <= max, got {list(value)}")
        return value


STAGES = ("global", "local")


class KindStages(_Strict):
    """A source kind's own stages. Only the stages named here replace the recipe's; an
    explicit ``null`` turns that stage off for the kind."""

    global_: Node | None = Field(default=None, alias="global")
    local: LocalSpec | None = None

    @model_validator(mode="after")
    def _names_a_stage(self) -> "KindStages":
        if not self.model_fields_set:
            raise ValueError(f"give the stage(s) this kind replaces: {' and/or '.join(STAGES)}")
        return self

    def replaced(self) -> tuple[str, ...]:
        """The stages this kind replaces, in ``STAGES`` order."""
        fields = {"global": "global_", "local": "local"}
        return tuple(stage for stage in STAGES if fields[stage] in self.model_fields_set)

    def to_dict(self) -> dict:
        """Only the replaced stages: an unset stage (the recipe's) and ``null`` (none) differ."""
        full = self.model_dump(mode="json", by_alias=True)
        return {stage: full[stage] for stage in self.replaced()}


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


class Recipe(_Strict):
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

    def apply(self, image: np.ndarray, *, seed: int, key: str,
              masks: Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]] | None = None,
              kind: str | None = None) -> Applied:
        """Apply the recipe (the stages of source ``kind`` when given). ``masks`` are the
        candidate regions, or a callable returning them that is called only when the
        local stage runs."""
        if self.kinds or kind is not None:
            staged = self.for_kind(kind)
            if staged is not self:
                return staged.apply(image, seed=seed, key=key, masks=masks)
        image = to_rgb_uint8(image)
        regions_picked: list[np.ndarray] = []
        run_local = False
        note = ""
        if self.local is not None:
            if masks is None:
                raise ValueError(f"recipe '{self.name}' has a local stage: pass masks= "
                                 "(a list of H x W bool arrays, possibly empty)")
            if not callable(masks):
                masks = local_stage.check_masks(masks, image.shape[:2])
            local_rng = rng_for(seed, key, "local")
            if local_rng.random() < self.local.p:
                if callable(masks):
                    masks = local_stage.check_masks(masks(), image.shape[:2])
                picked = local_stage.select_regions(masks, self.local.area, self.local.regions, local_rng)
                if picked:
                    run_local = True
                    regions_picked = [masks[i] for i in picked]
                else:
                    lo, hi = self.local.area
                    note = f"no region in area range [{lo}, {hi}] among {len(masks)} candidates"
                    if self.local.fallback == "skip":
                        return Applied(image=image, status="skipped", note=note,
                                       local_order=self.local_order)
        applied = Applied(image=image, note=note, local_order=self.local_order)

        def global_stage() -> None:
            if self.global_ is not None:
                applied.image, applied.ops = self._run_node(
                    self.global_, applied.image, rng_for(seed, key, "global"), (seed, key, "global"))

        def local_stage_run() -> None:
            def run_ops(img: np.ndarray, j: int) -> tuple[np.ndarray, list[dict]]:
                stream = (seed, key, "local", f"region{j}")
                return self._run_node(self.local.ops, img, rng_for(*stream), stream)

            applied.image, applied.regions, applied.mask = local_stage.apply_regions(
                applied.image, regions_picked, self.local.feather, run_ops)

        stages = [global_stage, local_stage_run] if self.local_order == "after" else [local_stage_run, global_stage]
        for stage in stages:
            if stage is global_stage or run_local:
                stage()
        return applied

    def _run_node(self, node: Any, image: np.ndarray, rng: np.random.Generator,
                  stream: tuple) -> tuple[np.ndarray, list[dict]]:
        records: list[dict] = []
        for name, level, overrides in plan(node, rng):
            params_rng = rng_for(*stream, "params", str(len(records)))
            image, record = run_op(image, name, level, params_rng, backend=self.backend, overrides=overrides)
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


# ---------------------------------------------------------------- loading

def _loc(loc: Sequence[Any]) -> str:
    out = "recipe"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("<") and part.endswith(">"):
            continue  # our union tags, e.g. '<op>'
        else:
            out += f".{part}"
    return out


def _message(err: dict) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "missing":
        msg = "required field is missing"
    elif "input" in err and err["type"] not in ("value_error", "invalid_node"):
        msg += f" (got {err['input']!r})"
    return msg


def _format(exc: ValidationError, source: str) -> str:
    seen: list[str] = []
    for err in exc.errors(include_url=False):
        line = f"{_loc(err['loc'])}: {_message(err)}"
        if line not in seen:
            seen.append(line)
    head = f"invalid recipe {source}" if source else "invalid recipe"
    return head + ":\n  " + "\n  ".join(seen)


def builtin_recipes() -> tuple[str, ...]:
    """Names of the recipes shipped in corruptor/recipe/builtin."""
    folder = BUILTIN_DIR
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def builtin_recipe_path(name: str) -> Path:
    path = BUILTIN_DIR / f"{name}.yaml"
    if not path.is_file():
        raise RecipeError(f"unknown built-in recipe '{name}'; allowed: {', '.join(builtin_recipes())}")
    return Path(str(path))


def builtin_recipe(name: str) -> Recipe:
    """A shipped recipe by name, e.g. ``builtin_recipe("maa-paper")``."""
    return load_recipe(builtin_recipe_path(name))


def load_recipe(source: str | Path | Mapping[str, Any] | Recipe) -> Recipe:
    """A recipe from a YAML path, a built-in name (``maa-paper``) or a mapping; validated."""
    if isinstance(source, Recipe):
        return source
    label = ""
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            if isinstance(source, str) and "/" not in source and not source.endswith((".yaml", ".yml")):
                path = builtin_recipe_path(source)
            else:
                raise RecipeError(f"recipe file not found: {path}; built-in recipes: {', '.join(builtin_recipes())}")
        label = str(path)
        try:
            data = load_file(path, label)  # bounded: size, alias expansion, depth, UTF-8
        except YamlLoadError as exc:
            raise RecipeError(f"recipe {exc}") from None
        except OSError as exc:
            raise RecipeError(f"recipe {label}: cannot read: {exc}") from None
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {label}: the top level must be a mapping with keys "
                          f"{', '.join(f.alias or n for n, f in Recipe.model_fields.items())}; "
                          f"got {type(data).__name__}")
    backend = data.get("backend", "native")
    try:
        return Recipe.model_validate(data, context={"backend": backend})
    except ValidationError as exc:
        raise RecipeError(_format(exc, label)) from None
