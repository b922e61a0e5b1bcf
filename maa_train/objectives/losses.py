"""Distillation and adversarial objectives of MAA training.

Logit conventions: real = clean-teacher tokens, fake = corrected student tokens. The caller
feeds the discriminator `fake.detach()` for `discriminator_loss` and the live `fake` for
`generator_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_LOSSES = ("bce", "hinge", "lsgan")


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"adversarial loss kind {kind!r} is not known; allowed: {list(GAN_LOSSES)}")


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, cosine_weight: float = 0.0) -> torch.Tensor:
    """MSE between student and (detached) teacher tokens, plus optional weight * (1 - cosine)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ")
    student, teacher = student.float(), teacher.detach().float()
    loss = F.mse_loss(student, teacher)
    if cosine_weight:
        loss = loss + cosine_weight * (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    return loss


def generator_loss(fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """What the adapters minimise so their tokens pass as real."""
    _check_kind(kind)
    fake_logits = fake_logits.float()
    if kind == "bce":  # non-saturating: -log sigmoid(D(fake))
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    return (fake_logits - 1.0).pow(2).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Mean of the real-side and fake-side terms."""
    _check_kind(kind)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "bce":
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    elif kind == "hinge":
        real, fake = F.relu(1.0 - real_logits).mean(), F.relu(1.0 + fake_logits).mean()
    else:
        real, fake = (real_logits - 1.0).pow(2).mean(), fake_logits.pow(2).mean()
    return 0.5 * (real + fake)


def r1_penalty(disc: torch.nn.Module, real_tokens: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real tokens (per token); the trainer applies weight and interval."""
    real = real_tokens.detach().float().requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        logits = disc(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.pow(2).sum(-1).mean()


def adv_weight(step: int, lam: float = 0.1, warmup_steps: int = 0) -> float:
    """lambda, ramped linearly from 0 over `warmup_steps` steps."""
    if lam < 0 or warmup_steps < 0:
        raise ValueError(f"adv_weight needs lam >= 0 and warmup_steps >= 0, got {lam}, {warmup_steps}")
    if warmup_steps == 0:
        return float(lam)
    return float(lam) * min(1.0, max(step, 0) / warmup_steps)
