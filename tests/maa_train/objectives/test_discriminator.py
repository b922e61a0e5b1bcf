import pytest
import torch

from maa_train.objectives.discriminator import TokenDiscriminator


def test_per_token_logits_and_layout():
    disc = TokenDiscriminator(12, width=16, blocks=5)
    assert disc(torch.randn(3, 7, 12)).shape == (3, 7)
    linears = [m for m in disc.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 + 2 * 5 + 1
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in disc.modules()) == 5


def test_tokens_are_scored_independently():
    disc = TokenDiscriminator(12, width=16, blocks=2)
    x = torch.randn(1, 5, 12)
    y = x.clone()
    y[0, 4] += 1.0
    assert torch.equal(disc(x)[0, :4], disc(y)[0, :4])


def test_spectral_norm_bounds_linear_gain():
    disc = TokenDiscriminator(12, width=16, blocks=1, spectral_norm=True)
    for _ in range(20):  # power iterations run in training mode
        disc(torch.randn(4, 12))
    disc.eval()
    w = disc.stem[0].weight
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_width_mismatch_is_clear():
    with pytest.raises(ValueError, match=r"expects tokens \[\.\.\., 12\]"):
        TokenDiscriminator(12, width=8, blocks=1)(torch.randn(2, 10))
