"""The MAA adapter: three correction paths on a block's input, gated so it starts as identity.

    h    = LayerNorm(x)                                    (``norm``)
    mlp  = Linear(d, bottleneck) -> GELU -> Linear(bottleneck, d) on h, all tokens   (``mlp.0``, ``mlp.2``)
    attn = beta_attn * proj(WindowAttention(qkv(h))) on the patch grid only
           (prefix tokens such as CLS excluded), added to ``mlp`` on patch tokens
    pool = MaxPool(k x k, stride 1, same padding) of x on the patch grid
    out  = x + alpha_mlp * (mlp + attn) + alpha_pool * pool,   alpha_* = 0 at init

Choices the published description leaves open, fixed here and mirrored by the reference
forward in tests/maa_train/test_official.py:
- one LayerNorm feeds both the MLP and the attention path (the release's parameter list has a
  single ``norm``); the max-pool path reads the un-normalised input x;
- ``beta_attn`` is a learnable scalar (init 1) scaling the attention path after its output
  projection, so the attention and MLP paths can be balanced under the shared gate alpha_mlp;
- windows tile a grid zero-padded to a multiple of the window, as in Swin; padded cells are
  zero tokens, so their q/k/v equal the qkv bias and they take part as keys. Only the q/k/v
  of padded cells are materialised (as the bias), not their projection: same function, fewer
  FLOPs than projecting padded tokens;
- the relative-position bias table has (2w-1)^2 rows and one column per head, indexed by
  (dy + w - 1) * (2w - 1) + (dx + w - 1).

Precision: the gated residual sum is done in fp32 and rounded once to the stream's dtype
(x + 1e-3-sized corrections vanish in bf16 otherwise); the matrix work follows autocast, so
under bf16 autocast it runs in bf16. ``full_fp32`` runs everything in fp32 as the release did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from maa_train.grid import PatchGrid


@dataclass(frozen=True)
class AdapterConfig:
    bottleneck: int = 256
    attn_dim: int = 128
    heads: int = 8
    window: int = 7
    pool_kernel: int = 3
    use_mlp: bool = True
    use_attn: bool = True
    use_pool: bool = True
    fp32: bool = True  # fp32 adapter parameters and residual sum (matrix work follows autocast)
    full_fp32: bool = False  # also run the matrix work in fp32 (the release's compute; slower)

    def __post_init__(self) -> None:
        for name in ("bottleneck", "attn_dim", "heads", "window", "pool_kernel"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"AdapterConfig.{name} must be a positive int, got {value!r}")
        if self.attn_dim % self.heads:
            raise ValueError(
                f"AdapterConfig.attn_dim ({self.attn_dim}) must be divisible by AdapterConfig.heads ({self.heads})"
            )
        if self.pool_kernel % 2 == 0:
            raise ValueError(f"AdapterConfig.pool_kernel must be odd for same padding, got {self.pool_kernel}")
        if not (self.use_mlp or self.use_attn or self.use_pool):
            raise ValueError("AdapterConfig: at least one of use_mlp, use_attn, use_pool must be True")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterConfig":
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown AdapterConfig fields {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # device types without autocast (meta, used for FLOP counting)
        return False


def relative_position_index(window: int) -> torch.Tensor:
    """[w*w, w*w] row of the bias table for each (query, key) pair of one window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # [2, w*w]
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


class WindowAttention(nn.Module):
    def __init__(self, dim: int, attn_dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.attn_dim, self.heads, self.window = attn_dim, heads, window
        self.qkv = nn.Linear(dim, 3 * attn_dim)
        self.proj = nn.Linear(attn_dim, dim)
        self.beta_attn = nn.Parameter(torch.ones(1))
        self.relpos_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relpos_table, std=0.02)
        self.register_buffer("relpos_index", relative_position_index(window), persistent=False)

    def relpos_bias(self) -> torch.Tensor:
        n = self.window * self.window
        return self.relpos_table[self.relpos_index.flatten()].view(n, n, self.heads).permute(2, 0, 1)

    def forward(self, h: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        """h: [B, prefix + H*W, d] normalised tokens -> [B, H*W, d] for the patch tokens."""
        return self.unscaled(h, grid) * self.beta_attn

    def unscaled(self, h: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        """The path before `beta_attn` (the adapter folds beta into its gate: one pass less)."""
        b, w, a, heads = h.shape[0], self.window, self.attn_dim, self.heads
        gh, gw = grid.height, grid.width
        ph, pw = math.ceil(gh / w) * w, math.ceil(gw / w) * w
        # Project every token and drop the prefix afterwards: slicing h first would copy it.
        qkv = self.qkv(h)[:, grid.prefix :].unflatten(1, (gh, gw))
        if (ph, pw) != (gh, gw):
            # A zero token projects to the bias: fill the padding with it instead of projecting zeros.
            fill = self.qkv.bias if self.qkv.bias is not None else qkv.new_zeros(3 * a)
            padded = fill.to(qkv.dtype).expand(b, ph, pw, 3 * a).clone()
            padded[:, :gh, :gw] = qkv
            qkv = padded
        nh, nw = ph // w, pw // w
        qkv = (
            qkv.reshape(b, nh, w, nw, w, 3, heads, a // heads)
            .permute(5, 0, 1, 3, 6, 2, 4, 7)
            .reshape(3, b * nh * nw, heads, w * w, a // heads)
        )
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.relpos_bias().to(q.dtype))
        out = (
            out.view(b, nh, nw, heads, w, w, a // heads)
            .permute(0, 1, 4, 2, 5, 3, 6)
            .reshape(b, ph, pw, a)[:, :gh, :gw]
            .reshape(b, gh * gw, a)
        )
        return self.proj(out)


class MAAAdapter(nn.Module):
    def __init__(self, dim: int, cfg: AdapterConfig = AdapterConfig()) -> None:
        super().__init__()
        self.dim, self.cfg = dim, cfg
        if cfg.use_mlp or cfg.use_attn:
            self.norm = nn.LayerNorm(dim)
        if cfg.use_mlp:
            self.mlp = nn.Sequential(nn.Linear(dim, cfg.bottleneck), nn.GELU(), nn.Linear(cfg.bottleneck, dim))
        if cfg.use_attn:
            self.window_attn = WindowAttention(dim, cfg.attn_dim, cfg.heads, cfg.window)
        if cfg.use_mlp or cfg.use_attn:
            self.alpha_mlp = nn.Parameter(torch.zeros(1))
        if cfg.use_pool:
            self.alpha_pool = nn.Parameter(torch.zeros(1))

    def forward(self, hidden: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[-1] != self.dim:
            raise ValueError(f"MAAAdapter expects hidden [B, N, {self.dim}], got {tuple(hidden.shape)}")
        grid.check(hidden.shape[1])
        if self.cfg.full_fp32 and _autocast_on(hidden.device.type):
            with torch.autocast(hidden.device.type, enabled=False):
                return self._forward(hidden.float(), grid).to(hidden.dtype)
        if self.cfg.full_fp32:
            return self._forward(hidden.float(), grid).to(hidden.dtype)
        return self._forward(hidden, grid)

    def _forward(self, x: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        cfg, p = self.cfg, grid.prefix
        sum_dtype = torch.float32 if cfg.fp32 else x.dtype
        # A fresh copy in the sum dtype (never `x` itself): the corrections are added in place,
        # one pass each, and no backward needs this buffer's values.
        out = x.to(sum_dtype, copy=True)
        if cfg.use_mlp or cfg.use_attn:
            h = self._normed(x)
            if cfg.use_mlp:
                out.addcmul_(self.mlp(h), self.alpha_mlp)
            if cfg.use_attn:
                gate = self.alpha_mlp * self.window_attn.beta_attn
                out[:, p:].addcmul_(self.window_attn.unscaled(h, grid), gate)
        if cfg.use_pool:
            out[:, p:].addcmul_(self.pool(x[:, p:], grid), self.alpha_pool)
        return out.to(x.dtype)

    def _normed(self, x: torch.Tensor) -> torch.Tensor:
        if _autocast_on(x.device.type):
            # LayerNorm straight to the autocast dtype (it accumulates in fp32 internally)
            # instead of an fp32 output that both projections would cast again.
            dtype = torch.get_autocast_dtype(x.device.type)
            with torch.autocast(x.device.type, enabled=False):
                return F.layer_norm(x.to(dtype), (self.dim,), self.norm.weight.to(dtype), self.norm.bias.to(dtype),
                                    self.norm.eps)
        return self.norm(x.to(self.norm.weight.dtype))

    def pool(self, patches: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        b, _, d = patches.shape
        k = self.cfg.pool_kernel
        img = patches.view(b, grid.height, grid.width, d).permute(0, 3, 1, 2)
        pooled = F.max_pool2d(img, k, stride=1, padding=k // 2)
        return pooled.permute(0, 2, 3, 1).reshape(b, grid.num_patches, d)
