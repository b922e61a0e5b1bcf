"""The adapter's settings: one validated model, read from YAML (``adapter.*``), from
checkpoints and from code alike, so a bad value fails before any model loads."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterConfig":
        return cls(**data)
