"""The MAA adapter: three correction paths on a block's input, gated so it starts as identity.

    h    = LayerNorm(x)                                    (``norm``)
    mlp  = Linear(d, bottleneck) -> GELU -> Linear(bottleneck, d) on h, all tokens   (``mlp.0``, ``mlp.2``)
    attn = beta_attn * proj(WindowAttention(qkv(h))) on the patch grid only
           (prefix tokens such as CLS excluded), added to ``mlp`` on patch tokens
    pool = MaxPool(k x k, stride 1, same padding) of x on the patch grid
    out  = x + alpha_mlp * (mlp + attn) + alpha_pool * pool,   alpha_* = 0 at init

Choices the published description leaves open, fixed here and mirrored by the reference
forward in tests/maa_train/students/test_official.py:
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

How it is computed (same function, fewer kernels: at batch 1 on a GPU the encoder is
launch-bound, so kernels per block set the adapter's cost):
- the gates are folded into the output projections (alpha_mlp * mlp.2, alpha_mlp * beta_attn *
  proj), and ``mlp.0`` and ``qkv``, which read the same h, run as one GEMM on their stacked
  weights; parameter names and shapes stay those of the release;
- windows are gathered and scattered with one index op each instead of pad/permute copies; the
  relative-position bias is laid out with 8-aligned rows, which fused attention kernels take
  without padding it again on every call;
- for deployment, `cache_weights(model)` turns on a cache of these derived weights: with
  gradients off they are built once and reused until a parameter changes (tracked by tensor
  version counters). Off by default, because some in-place writers do not bump version
  counters (fused AdamW, writes through ``.data``): call ``clear_cache()`` after those.

Precision: the matrix work follows autocast (bf16 under bf16 autocast). The residual sum is done
in fp32 and rounded once to the stream's dtype (x + 1e-3-sized corrections vanish if x is rounded
before the sum): a 16-bit stream gets its three corrections summed in the compute dtype, then
added in one fp32 op; an fp32 stream takes them one by one. ``full_fp32`` runs everything in fp32
as the release did.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from maa_train.encoders.grid import PatchGrid
from maa_train.students.adapter_config import AdapterConfig


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


def window_order(height: int, width: int, window: int, device=None) -> torch.Tensor:
    """[H*W] position of each patch (row-major) in the window-major order of the padded grid:
    windows row by row, cells row by row inside a window."""
    ys = torch.arange(height, device=device).view(-1, 1)
    xs = torch.arange(width, device=device).view(1, -1)
    windows_per_row = -(-width // window)
    win = (ys // window) * windows_per_row + xs // window
    return (win * (window * window) + (ys % window) * window + xs % window).flatten()


# Fused attention kernels want every stride of the bias but the last a multiple of 8 elements;
# an unaligned bias is padded again on each call.
_BIAS_ALIGN = 8


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
        self._orders: dict = {}

    def __getstate__(self):
        return {**self.__dict__, "_orders": {}}

    def relpos_bias(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """[1, heads, w*w, w*w] bias in `dtype`, a view of 8-aligned rows."""
        n = self.window * self.window
        row = -(-n // _BIAS_ALIGN) * _BIAS_ALIGN
        table = self.relpos_table
        out = table.new_empty(1, self.heads, n, row, dtype=dtype or table.dtype)[..., :n]
        # table.t() is [heads, rows]: the gather lands heads-first, no permute copy
        return out.copy_(table.t()[:, self.relpos_index].unsqueeze(0))

    def window_order(self, grid: PatchGrid, device: torch.device) -> torch.Tensor:
        if torch.compiler.is_compiling():  # a constant for the compiler; no cache to guard on
            return window_order(grid.height, grid.width, self.window, device)
        key = (grid.height, grid.width, device)
        order = self._orders.get(key)
        if order is None:
            # made in inference mode it could never be saved for a backward pass later
            with torch.inference_mode(False):
                order = self._orders[key] = window_order(grid.height, grid.width, self.window, device)
        return order

    def attend(self, qkv: torch.Tensor, grid: PatchGrid, bias: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """qkv [B, prefix + H*W, 3a] (any strides) -> [B, H*W, a]: attention output of each patch,
        before the output projection. `bias` from `relpos_bias`, `fill` the q/k/v of a padded
        (zero) cell, i.e. the qkv bias, both in qkv's dtype."""
        b, w, a, heads = qkv.shape[0], self.window, self.attn_dim, self.heads
        gh, gw = grid.height, grid.width
        cells = -(-gh // w) * w * -(-gw // w) * w
        order = self.window_order(grid, qkv.device)
        if cells > grid.num_patches:
            windows = fill.expand(b, cells, 3 * a).clone()
        else:
            windows = qkv.new_empty(b, cells, 3 * a)
        windows.index_copy_(1, order, qkv[:, grid.prefix :])
        q, k, v = windows.view(-1, w * w, 3, heads, a // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B*windows, heads, w*w, a/heads]
        return out.transpose(1, 2).reshape(b, cells, a).index_select(1, order)

    def forward(self, h: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        """h: [B, prefix + H*W, d] normalised tokens -> [B, H*W, d] for the patch tokens."""
        qkv = self.qkv(h)
        out = self.attend(qkv, grid, self.relpos_bias(qkv.dtype), self.qkv.bias.to(qkv.dtype))
        return self.proj(out) * self.beta_attn


class _Derived(NamedTuple):
    """Weights in the compute dtype, gates folded in; None for a path that is off."""

    norm_weight: torch.Tensor | None
    norm_bias: torch.Tensor | None
    in_weight: torch.Tensor | None  # mlp.0 stacked over qkv: both read h
    in_bias: torch.Tensor | None
    mlp_weight: torch.Tensor | None  # alpha_mlp * mlp.2
    mlp_bias: torch.Tensor | None
    proj_weight: torch.Tensor | None  # alpha_mlp * beta_attn * proj
    proj_bias: torch.Tensor | None
    relpos: torch.Tensor | None
    alpha_pool: torch.Tensor | None


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
        self.cache_weights = False  # see `cache_weights()`
        self._cache: tuple | None = None
        self._owners: list | None = None

    def forward(self, hidden: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[-1] != self.dim:
            raise ValueError(f"MAAAdapter expects hidden [B, N, {self.dim}], got {tuple(hidden.shape)}")
        grid.check(hidden.shape[1])
        device = hidden.device.type
        autocast = _autocast_on(device)
        if self.cfg.full_fp32:
            dtype = torch.float32
        elif autocast:
            dtype = torch.get_autocast_dtype(device)
        else:
            dtype = next(iter(self.parameters())).dtype
        if not autocast:
            return self._forward(hidden, grid, dtype)
        # Inputs arrive in the compute dtype; autocast would only move LayerNorm to fp32.
        with torch.autocast(device, enabled=False):
            return self._forward(hidden, grid, dtype)

    def _forward(self, x: torch.Tensor, grid: PatchGrid, dtype: torch.dtype) -> torch.Tensor:
        cfg, p = self.cfg, grid.prefix
        wt = self.derived(dtype)
        mlp = attn = None
        if cfg.use_mlp or cfg.use_attn:
            h = F.layer_norm(x.to(dtype), (self.dim,), wt.norm_weight, wt.norm_bias, self.norm.eps)
            projected = F.linear(h, wt.in_weight, wt.in_bias)
            split = cfg.bottleneck if cfg.use_mlp else 0
            if cfg.use_mlp:
                mlp = F.linear(F.gelu(projected[..., :split]), wt.mlp_weight, wt.mlp_bias)
            if cfg.use_attn:
                attn = self.window_attn.attend(projected[..., split:], grid, wt.relpos, wt.in_bias[split:])
                attn = F.linear(attn, wt.proj_weight, wt.proj_bias)
        # Elementwise kernels compute in fp32 and round once to their output's dtype. An fp32
        # stream takes the corrections one by one; a 16-bit stream would be rounded at each add,
        # so its corrections are summed first and added to it once.
        wide = x.dtype.itemsize >= 4
        if mlp is not None:
            acc = x + mlp if wide else mlp
        else:
            acc = x.clone() if wide else x.new_zeros(x.shape, dtype=dtype)
        if attn is not None:
            acc[:, p:].add_(attn)
        if cfg.use_pool:
            # the gate in the accumulator's dtype: mixed dtypes cost CPU kernels temporary copies
            acc[:, p:].addcmul_(self.pool(x[:, p:], grid), self.alpha_pool if wide else wt.alpha_pool)
        if wide:
            return acc
        out = x + acc
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def derived(self, dtype: torch.dtype) -> _Derived:
        """The weights `forward` uses, in `dtype`. Built on every call unless `cache_weights` is
        on and gradients are off (they must flow to the parameters) outside torch.compile; then
        cached until a parameter changes."""
        if not self.cache_weights or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self._derive(dtype)
        if self._owners is None:  # walking the module tree costs more than the check itself
            self._owners = [m._parameters for m in self.modules() if m._parameters]
        key = [dtype]
        for params in self._owners:  # each module's dict as it is now: sees reassigned parameters
            if any(t.is_inference() for t in params.values()):
                return self._derive(dtype)  # inference tensors have no version counter to key on
            key.extend((t.data_ptr(), t._version) for t in params.values())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._derive(dtype))
        return self._cache[1]

    def clear_cache(self) -> None:
        self._cache = self._owners = None

    def __getstate__(self):  # copies and pickles leave derived tensors behind
        return {**self.__dict__, "_cache": None, "_owners": None}

    def _apply(self, fn, recurse=True):
        self.clear_cache()  # weights are about to move or change dtype
        return super()._apply(fn, recurse)

    def _derive(self, dtype: torch.dtype) -> _Derived:
        cfg = self.cfg
        fields = dict.fromkeys(_Derived._fields)
        if cfg.use_mlp or cfg.use_attn:
            fields["norm_weight"] = self.norm.weight.to(dtype)
            fields["norm_bias"] = self.norm.bias.to(dtype)
            inputs = ([self.mlp[0]] if cfg.use_mlp else []) + ([self.window_attn.qkv] if cfg.use_attn else [])
            fields["in_weight"] = torch.cat([m.weight for m in inputs]).to(dtype)
            fields["in_bias"] = torch.cat([m.bias for m in inputs]).to(dtype)
        if cfg.use_mlp:
            fields["mlp_weight"] = (self.mlp[2].weight * self.alpha_mlp).to(dtype)
            fields["mlp_bias"] = (self.mlp[2].bias * self.alpha_mlp).to(dtype)
        if cfg.use_attn:
            attn = self.window_attn
            gate = self.alpha_mlp * attn.beta_attn
            fields["proj_weight"] = (attn.proj.weight * gate).to(dtype)
            fields["proj_bias"] = (attn.proj.bias * gate).to(dtype)
            fields["relpos"] = attn.relpos_bias(dtype)
        if cfg.use_pool:
            fields["alpha_pool"] = self.alpha_pool.to(dtype)
        return _Derived(**fields)

    def pool(self, patches: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        b, _, d = patches.shape
        k = self.cfg.pool_kernel
        img = patches.view(b, grid.height, grid.width, d).permute(0, 3, 1, 2)
        pooled = F.max_pool2d(img, k, stride=1, padding=k // 2)
        return pooled.permute(0, 2, 3, 1).reshape(b, grid.num_patches, d)


def cache_weights(model: nn.Module, enabled: bool = True) -> int:
    """Turn the derived-weight cache of every MAA adapter in `model` on (or off); returns how
    many adapters it reached. For inference with fixed weights: saves the per-forward casts,
    gate folding and stacking (about ten small kernels per adapter, which count at batch 1).
    The cache sees in-place writes that bump version counters and reassigned parameters; after
    anything else (fused optimizer steps, writes through ``.data``, replacing a submodule such
    as ``adapter.mlp[2]``) call ``clear_cache()`` on the adapter or turn the cache off."""
    adapters = [m for m in model.modules() if isinstance(m, MAAAdapter)]
    for adapter in adapters:
        adapter.cache_weights = enabled
        adapter.clear_cache()
    return len(adapters)
