"""The adversarial term: a per-token discriminator tells clean-teacher tokens (real) from
corrected ones (fake); the adapters learn to pass as real.

Logit conventions: real = clean-teacher tokens, fake = corrected student tokens. The
discriminator sees ``fake.detach()`` for its own loss and the live ``fake`` for the
adapters'. The GAN loss kinds are a table of (generator, discriminator) functions.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from maa_train.objectives.base import Objective, Step, Terms, register_objective
from maa_train.objectives.discriminator import TokenDiscriminator


def _bce_g(fake):  # non-saturating: -log sigmoid(D(fake))
    return F.softplus(-fake).mean()


def _bce_d(real, fake):
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real)),
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def _hinge_d(real, fake):
    return F.relu(1.0 - real).mean(), F.relu(1.0 + fake).mean()


def _lsgan_d(real, fake):
    return (real - 1.0).pow(2).mean(), fake.pow(2).mean()


GanLoss = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor, torch.Tensor], tuple]]
GAN_LOSSES: dict[str, GanLoss] = {
    "bce": (_bce_g, _bce_d),
    "hinge": (lambda fake: -fake.mean(), _hinge_d),
    "lsgan": (lambda fake: (fake - 1.0).pow(2).mean(), _lsgan_d),
}


def _kind(kind: str) -> GanLoss:
    if kind not in GAN_LOSSES:
        raise ValueError(f"adversarial loss kind {kind!r} is not known; allowed: {list(GAN_LOSSES)}")
    return GAN_LOSSES[kind]


def generator_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """What the adapters minimise so their tokens pass as real."""
    return _kind(kind)[0](fake_logits.float())


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Mean of the real-side and fake-side terms."""
    real, fake = _kind(kind)[1](real_logits.float(), fake_logits.float())
    return 0.5 * (real + fake)


def adv_weight(step: int, lam: float = 0.1, warmup_steps: int = 0) -> float:
    """lambda, ramped linearly from 0 over `warmup_steps` steps."""
    if lam < 0 or warmup_steps < 0:
        raise ValueError(f"adv_weight needs lam >= 0 and warmup_steps >= 0, got {lam}, {warmup_steps}")
    if warmup_steps == 0:
        return float(lam)
    return float(lam) * min(1.0, max(step, 0) / warmup_steps)


class Adversarial(Objective):
    name = "adv"
    shown = ("adv", "disc")

    def __init__(self, disc: TokenDiscriminator, weight: float, warmup_steps: int, kind: str):
        super().__init__()
        _kind(kind)
        self.disc, self.weight, self.warmup_steps, self.kind = disc, weight, warmup_steps, kind

    def terms(self, step: Step) -> Terms:
        lam = adv_weight(step.step, self.weight, self.warmup_steps)
        self.disc.requires_grad_(False)
        with step.autocast():
            fake_for_g = self.disc(step.student)
        self.disc.requires_grad_(True)
        adv = generator_loss(fake_for_g.float(), self.kind)
        with step.autocast():
            real_logits = self.disc(step.teacher)
            fake_logits = self.disc(step.student.detach())
        disc = discriminator_loss(real_logits.float(), fake_logits.float(), self.kind)
        return Terms(logged={"adv": adv, "disc": disc}, student=lam * adv, own=disc)

    def state(self) -> dict[str, torch.Tensor]:
        return self.disc.state_dict()  # discriminator.safetensors keeps the discriminator's own names

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        mine = self.disc.state_dict()
        self.disc.load_state_dict({k: v for k, v in state.items() if k in mine})


@register_objective("adv")
def build(cfg, student, built) -> Adversarial | None:
    # The student kind says whether it is trained adversarially (mse_only is not).
    if not student.adversarial or cfg.loss.adv_weight <= 0:
        return None
    d = cfg.discriminator
    disc = TokenDiscriminator(student.feature_dim, d.width, d.blocks, d.spectral_norm)
    return Adversarial(disc, cfg.loss.adv_weight, cfg.loss.adv_warmup_steps, d.loss)
