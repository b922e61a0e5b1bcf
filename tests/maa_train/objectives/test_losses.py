import math

import pytest
import torch

from maa_train.objectives.discriminator import TokenDiscriminator
from maa_train.objectives.adversarial import adv_weight, discriminator_loss, generator_loss
from maa_train.objectives.distillation import distill_loss
from maa_train.objectives.r1 import r1_penalty


def test_distill_loss_mse_and_cosine():
    s, t = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    assert distill_loss(s, t).item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)
    assert distill_loss(t, t).item() == 0.0
    assert distill_loss(2 * t, t, cosine_weight=1.0).item() == pytest.approx(((t) ** 2).mean().item(), rel=1e-5)
    t.requires_grad_(True)
    distill_loss(s.requires_grad_(True), t).backward()
    assert t.grad is None  # the teacher is a target
    with pytest.raises(ValueError, match="shapes differ"):
        distill_loss(s, t[:, :4])


def test_bce_losses_match_definitions():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = torch.sigmoid
    expected_d = 0.5 * (-torch.log(sig(real)).mean() - torch.log(1 - sig(fake)).mean())
    assert discriminator_loss(real, fake).item() == pytest.approx(expected_d.item(), rel=1e-5)
    assert generator_loss(fake).item() == pytest.approx(-torch.log(sig(fake)).mean().item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["bce", "hinge", "lsgan"])
def test_losses_prefer_the_right_side(kind):
    good, bad = torch.full((4,), 3.0), torch.full((4,), -3.0)
    # the discriminator is happier when real scores high and fake low
    assert discriminator_loss(good, bad, kind) < discriminator_loss(bad, good, kind)
    # the generator is happier when its fakes score high
    assert generator_loss(good, kind) < generator_loss(bad, kind)


def test_unknown_kind_lists_allowed():
    with pytest.raises(ValueError, match=r"allowed: \['bce', 'hinge', 'lsgan'\]"):
        generator_loss(torch.zeros(2), "wgan")


def test_r1_penalty_matches_autograd_and_trains_disc():
    disc = TokenDiscriminator(6, width=8, blocks=1)
    real = torch.randn(3, 4, 6)
    penalty = r1_penalty(disc, real)
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(disc(x).sum(), x)
    assert penalty.item() == pytest.approx(g.pow(2).sum(-1).mean().item(), rel=1e-5)
    penalty.backward()
    assert disc.stem[0].weight.grad is not None


def test_adv_weight_warmup():
    assert adv_weight(0) == 0.1
    assert adv_weight(0, lam=0.1, warmup_steps=10) == 0.0
    assert math.isclose(adv_weight(5, lam=0.1, warmup_steps=10), 0.05)
    assert adv_weight(50, lam=0.1, warmup_steps=10) == 0.1
    with pytest.raises(ValueError):
        adv_weight(1, lam=-1.0)
