"""R1: gradient penalty on the discriminator at real tokens, applied every ``r1_interval``
steps with its weight scaled by the interval (lazy regularisation)."""
from __future__ import annotations

import torch

from maa_train.objectives.adversarial import select_tokens
from maa_train.objectives.base import Objective, Step, Terms, register_objective


def r1_penalty(disc: torch.nn.Module, real_tokens: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real tokens (per token); the objective applies weight and interval."""
    real = real_tokens.detach().float().requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        logits = disc(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.pow(2).sum(-1).mean()


class R1(Objective):
    name = "r1"

    def __init__(self, adversarial: Objective, weight: float, interval: int):
        super().__init__()
        self.__dict__["adversarial"] = adversarial  # not a submodule: its parameters are trained once
        self.weight, self.interval = weight, interval

    def terms(self, step: Step) -> Terms:
        if step.step % self.interval:
            return Terms()
        # At the real tokens the discriminator is trained on (discriminator.tokens), not
        # always the patch tokens: with tokens=cls the penalty belongs at the CLS token.
        real = select_tokens(step.teacher, step.teacher_prefix, self.adversarial.tokens)
        r1 = r1_penalty(self.adversarial.disc, real)
        return Terms(logged={"r1": r1}, own=self.weight * self.interval * r1)


@register_objective("r1")
def build(cfg, student, built) -> R1 | None:
    d = cfg.discriminator
    if "adv" not in built or d.r1_weight <= 0:
        return None
    return R1(built["adv"], d.r1_weight, d.r1_interval)
