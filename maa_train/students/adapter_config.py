"""The adapter's settings: one validated model, read from YAML (``adapter.*``), from
checkpoints and from code alike, so a bad value fails before any model loads."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator


class AdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bottleneck: int = Field(256, gt=0)
    attn_dim: int = Field(128, gt=0)
    heads: int = Field(8, gt=0)
    window: int = Field(7, gt=0)
    pool_kernel: int = Field(3, gt=0)
    use_mlp: bool = True
    use_attn: bool = True
    use_pool: bool = True
    fp32: bool = True  # fp32 adapter parameters and residual sum (matrix work follows autocast)
    full_fp32: bool = False  # also run the matrix work in fp32 (the release's compute; slower)
    # Which blocks carry an adapter (on their input): None, every block before the feature
    # layer (the paper); or block indices, negative from the end ([-2, -1]: the last two).
    # Range and feature layer are checked when the model is known (inject.adapter_blocks).
    blocks: tuple[int, ...] | None = None

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("adapter.blocks is empty; leave it null for every block up to the feature layer")
            repeated = sorted({b for b in value if value.count(b) > 1})
            if repeated:
                raise ValueError(f"adapter.blocks {list(value)} repeats block(s) {repeated}")
        return value

    @model_serializer(mode="wrap")
    def _omit_default_blocks(self, handler):
        # `blocks: null` is left out, so default configs and checkpoints keep their bytes.
        data = handler(self)
        if isinstance(data, dict) and data.get("blocks", 0) is None:
            del data["blocks"]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "AdapterConfig":
        if self.attn_dim % self.heads:
            raise ValueError(f"AdapterConfig.attn_dim ({self.attn_dim}) must be divisible by "
                             f"AdapterConfig.heads ({self.heads})")
        if self.pool_kernel % 2 == 0:
            raise ValueError(f"AdapterConfig.pool_kernel must be odd for same padding, got {self.pool_kernel}")
        if not (self.use_mlp or self.use_attn or self.use_pool):
            raise ValueError("AdapterConfig: at least one of use_mlp, use_attn, use_pool must be True")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")  # JSON types: blocks as a list, as read back

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterConfig":
        return cls(**data)
