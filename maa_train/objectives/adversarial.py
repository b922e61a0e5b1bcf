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


# Where a logit says "real": the midpoint of each loss's targets (BCE/hinge: 0; LSGAN: 0.5).
DECISION = {"bce": 0.0, "hinge": 0.0, "lsgan": 0.5}


def adv_weight(step: int, lam: float = 0.1, warmup_steps: int = 0, start: int = 0) -> float:
    """lambda: 0 before `start`, then ramped linearly from 0 over `warmup_steps` steps."""
    if lam < 0 or warmup_steps < 0 or start < 0:
        raise ValueError(f"adv_weight needs lam, warmup_steps, start >= 0, got {lam}, {warmup_steps}, {start}")
    if step < start:
        return 0.0
    if warmup_steps == 0:
        return float(lam)
    return float(lam) * min(1.0, (step - start) / warmup_steps)


def accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> tuple[torch.Tensor, torch.Tensor]:
    """Share of real tokens called real and of fake tokens called fake (0.5 each = chance)."""
    cut = DECISION[kind]
    return (real_logits.detach() > cut).float().mean(), (fake_logits.detach() <= cut).float().mean()


TOKEN_CHOICES = ("patch", "cls", "all")


def select_tokens(patches: torch.Tensor, prefix: torch.Tensor | None, which: str) -> torch.Tensor:
    """The tokens the discriminator sees: patch tokens, the first prefix token (CLS), or prefix + patches."""
    if which == "patch":
        return patches
    if prefix is None or prefix.shape[1] == 0:
        raise ValueError(f"discriminator.tokens={which} needs prefix tokens, and this encoder gives none")
    if which == "cls":
        return prefix[:, :1]
    if which == "all":
        return torch.cat([prefix, patches], dim=1)
    raise ValueError(f"discriminator.tokens={which!r} is not known; allowed: {list(TOKEN_CHOICES)}")


class Adversarial(Objective):
    name = "adv"
    shown = ("adv", "disc", "disc_acc_real", "disc_acc_fake")

    def __init__(self, disc: TokenDiscriminator, weight: float, warmup_steps: int, kind: str, *,
                 tokens: str = "patch", disc_warmup: int = 0, ramp_start: int | None = None):
        super().__init__()
        _kind(kind)
        if tokens not in TOKEN_CHOICES:
            raise ValueError(f"discriminator.tokens={tokens!r} is not known; allowed: {list(TOKEN_CHOICES)}")
        self.disc, self.weight, self.warmup_steps, self.kind = disc, weight, warmup_steps, kind
        self.tokens, self.disc_warmup = tokens, disc_warmup
        # By default lambda ramps once the discriminator warm-up is over.
        self.ramp_start = disc_warmup if ramp_start is None else ramp_start
        self.needs_prefix = tokens != "patch"

    def adapters_frozen(self, step: int) -> bool:
        return step < self.disc_warmup

    def terms(self, step: Step) -> Terms:
        lam = 0.0 if self.adapters_frozen(step.step) else adv_weight(step.step, self.weight, self.warmup_steps,
                                                                      self.ramp_start)
        fake = select_tokens(step.student, step.student_prefix, self.tokens)
        real = select_tokens(step.teacher, step.teacher_prefix, self.tokens)
        self.disc.requires_grad_(False)
        with step.autocast():
            fake_for_g = self.disc(fake)
        self.disc.requires_grad_(True)
        adv = generator_loss(fake_for_g.float(), self.kind)
        with step.autocast():
            real_logits = self.disc(real)
            fake_logits = self.disc(fake.detach())
        disc = discriminator_loss(real_logits.float(), fake_logits.float(), self.kind)
        acc_real, acc_fake = accuracy(real_logits.float(), fake_logits.float(), self.kind)
        metrics = {"disc_acc_real": acc_real, "disc_acc_fake": acc_fake,
                   "adv_lambda": torch.tensor(lam, device=adv.device)}
        return Terms(logged={"adv": adv, "disc": disc}, student=lam * adv, own=disc, metrics=metrics)

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
    prefix = student.grid.prefix if hasattr(student, "grid") else 0
    if d.tokens != "patch" and prefix == 0:
        raise ValueError(f"discriminator.tokens={d.tokens} needs a prefix (CLS) token, and this encoder "
                         f"({getattr(student.info, 'model_type', '?')}) has none: use discriminator.tokens=patch")
    width = 2 * student.feature_dim if d.width == "auto" else d.width
    disc = TokenDiscriminator(student.feature_dim, width, d.blocks, d.spectral_norm)
    return Adversarial(disc, cfg.loss.adv_weight, cfg.loss.adv_warmup_steps, d.loss, tokens=d.tokens,
                       disc_warmup=d.warmup_steps, ramp_start=cfg.loss.adv_ramp_start)
