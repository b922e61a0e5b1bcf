"""Recipe nodes: an op (``{op, p, severity, params, weight}``), a ``chain`` of nodes applied
in order, or a weighted ``one_of``; their schema and the checks made at load.

Every check names the field and what is allowed: an unknown op lists the registered
ones, a parameter override is run once on a tiny image so a bad value fails at load,
not in the middle of a build.
"""
from __future__ import annotations

from typing import Annotated, Any, Mapping, Union

import numpy as np
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator,
                      model_validator)

from corruptor.ops.registry import IMAGENET_C, LEVELS, UnknownOpError, get_op
from corruptor.ops.step import run_op

class StrictModel(BaseModel):
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



Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# Capped so that a one_of's sum of weights stays finite (1e308 + 1e308 overflows to inf).
MAX_WEIGHT = 1e6
Weight = Annotated[float, Field(gt=0.0, le=MAX_WEIGHT, allow_inf_nan=False)]

SEVERITY_FORMS = ("an integer 1..5", "a range [lo, hi] with 1 <= lo <= hi <= 5",
                  "{weights: [w1, w2, w3, w4, w5]}")


class SeverityWeights(StrictModel):
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


class OpNode(StrictModel):
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


class ChainNode(StrictModel):
    chain: list["Node"] = Field(min_length=1)
    p: Probability = 1.0
    weight: Weight = 1.0


class OneOfNode(StrictModel):
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
