"""The DINOv2 architecture facts a converted checkpoint must agree with.

A registry entry states the architecture it expects; the graph reader derives the same
record from the ONNX graph, and any field that differs is a changed graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class Dinov2Arch:
    num_layers: int
    hidden_size: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    pos_grid: int               # learned position embeddings cover pos_grid x pos_grid patches
    num_registers: int = 0      # Dinov2Model has none; "with registers" is another HF class
    layer_scale: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.mlp_dim % self.hidden_size:
            raise ValueError(f"mlp_dim {self.mlp_dim} must be a multiple of hidden_size {self.hidden_size} "
                             "(Dinov2Config only has an integer mlp_ratio)")

    def diff(self, other: "Dinov2Arch") -> list[str]:
        return [f"{f.name}: expected {getattr(self, f.name)}, graph has {getattr(other, f.name)}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """HF Dinov2Model parameter names (hub naming, as facebook/dinov2-* ship) and shapes."""
        d, m, p = self.hidden_size, self.mlp_dim, self.patch_size
        shapes: dict[str, tuple[int, ...]] = {
            "embeddings.cls_token": (1, 1, d),
            "embeddings.position_embeddings": (1, 1 + self.pos_grid ** 2, d),
            "embeddings.patch_embeddings.projection.weight": (d, 3, p, p),
            "embeddings.patch_embeddings.projection.bias": (d,),
        }
        for i in range(self.num_layers):
            b = f"encoder.layer.{i}."
            for name in ("norm1", "norm2"):
                shapes[b + name + ".weight"] = shapes[b + name + ".bias"] = (d,)
            for proj in ("attention.attention.query", "attention.attention.key", "attention.attention.value",
                         "attention.output.dense"):
                shapes[b + proj + ".weight"] = (d, d)
                shapes[b + proj + ".bias"] = (d,)
            shapes[b + "mlp.fc1.weight"], shapes[b + "mlp.fc1.bias"] = (m, d), (m,)
            shapes[b + "mlp.fc2.weight"], shapes[b + "mlp.fc2.bias"] = (d, m), (d,)
            if self.layer_scale:
                shapes[b + "layer_scale1.lambda1"] = shapes[b + "layer_scale2.lambda1"] = (d,)
        shapes["layernorm.weight"] = shapes["layernorm.bias"] = (d,)
        return shapes

    def hf_config_kwargs(self) -> dict:
        return dict(hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                    num_attention_heads=self.num_heads, mlp_ratio=self.mlp_dim // self.hidden_size,
                    patch_size=self.patch_size, image_size=self.pos_grid * self.patch_size,
                    layerscale_value=1.0, use_swiglu_ffn=False, qkv_bias=True, hidden_act="gelu",
                    layer_norm_eps=1e-6, num_channels=3)

    def as_dict(self) -> dict:
        return asdict(self)
