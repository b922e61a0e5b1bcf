"""Per-token discriminator: tells clean-teacher tokens (real) from corrected tokens (fake)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


def _linear(d_in: int, d_out: int, spectral_norm: bool) -> nn.Module:
    layer = nn.Linear(d_in, d_out)
    return _spectral_norm(layer) if spectral_norm else layer


class ResidualBlock(nn.Module):
    def __init__(self, width: int, spectral_norm: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _linear(width, width, spectral_norm),
            nn.LayerNorm(width),
            nn.LeakyReLU(0.2),
            _linear(width, width, spectral_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class TokenDiscriminator(nn.Module):
    """Linear(d_in, width) + LeakyReLU(0.2), `blocks` residual blocks, Linear(width, 1).

    Input [..., d_in] tokens, output [...] logits (one per token)."""

    def __init__(self, d_in: int, width: int = 2048, blocks: int = 5, spectral_norm: bool = False) -> None:
        super().__init__()
        if d_in < 1 or width < 1 or blocks < 0:
            raise ValueError(f"TokenDiscriminator needs d_in >= 1, width >= 1, blocks >= 0; got {d_in}, {width}, {blocks}")
        self.d_in = d_in
        self.stem = nn.Sequential(_linear(d_in, width, spectral_norm), nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(*(ResidualBlock(width, spectral_norm) for _ in range(blocks)))
        self.head = _linear(width, 1, spectral_norm)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[-1] != self.d_in:
            raise ValueError(f"TokenDiscriminator expects tokens [..., {self.d_in}], got {tuple(tokens.shape)}")
        return self.head(self.blocks(self.stem(tokens))).squeeze(-1)
