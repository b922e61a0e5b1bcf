"""The recipe's stage settings: output (resize, crop, encode), the local stage (ops inside
mask regions) and a source kind's own stages."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from corruptor.recipe.nodes import Node, Probability, StrictModel

class OutputSpec(StrictModel):
    size: Annotated[int, Field(ge=1)] | None = None
    crop: Literal["center", "random", "none"] = "center"
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: Annotated[int, Field(ge=1, le=100)] = 95


class LocalSpec(StrictModel):
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


class KindStages(StrictModel):
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
