"""The trainer's optimisers and learning-rate schedules: AdamW for the adapters and, when an
objective has parameters of its own (the discriminator), AdamW for those; both follow a
linear warm-up then a cosine decay.

During a discriminator warm-up the adapters neither move nor advance their schedule: their
warm-up and cosine run over the steps that train them.
"""
from __future__ import annotations

import math

import torch

from maa_train.train import distributed
from maa_train.train.config import TrainConfig


def cosine_with_warmup(total: int, warmup_frac: float):
    warm = int(round(total * warmup_frac))

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Optimizers:
    """``opt_g``/``sched_g`` for the adapters; ``opt_d``/``sched_d`` only with ``aux_params``."""

    def __init__(self, cfg: TrainConfig, student_params, aux_params: list, total_steps: int):
        o = cfg.optim
        self.aux_params = aux_params
        self.grad_clip = o.grad_clip
        self.opt_g = torch.optim.AdamW(student_params, lr=o.adapter_lr, weight_decay=o.weight_decay)
        disc_warm = cfg.discriminator.warmup_steps if aux_params else 0
        if disc_warm >= total_steps:
            raise ValueError(f"discriminator.warmup_steps={disc_warm} leaves no adapter step of {total_steps}")
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(
            self.opt_g, cosine_with_warmup(total_steps - disc_warm, o.warmup_frac))
        if aux_params:
            self.opt_d = torch.optim.AdamW(aux_params, lr=o.disc_lr, weight_decay=o.weight_decay,
                                           betas=cfg.discriminator.betas)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, cosine_with_warmup(total_steps,
                                                                                            o.warmup_frac))

    def lr(self) -> list[float]:
        return self.sched_g.get_last_lr()

    def step(self, params: list, adapters_frozen: bool, world: int) -> dict[str, torch.Tensor]:
        """Average the gradients across ranks, clip and step. Gradient norms come back as
        tensors: reading them is a GPU sync, done at log steps only."""
        distributed.average_gradients(params, world)
        norms = {}
        if adapters_frozen:
            self.opt_g.zero_grad(set_to_none=True)  # discriminator warm-up: adapters and their schedule wait
        else:
            if self.grad_clip > 0:
                norms["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, self.grad_clip).detach()
            self.opt_g.step()
            self.sched_g.step()
            self.opt_g.zero_grad(set_to_none=True)
        if self.aux_params:
            distributed.average_gradients(self.aux_params, world)
            if self.grad_clip > 0:
                norms["disc_grad_norm"] = torch.nn.utils.clip_grad_norm_(self.aux_params, self.grad_clip).detach()
            self.opt_d.step()
            self.sched_d.step()
            self.opt_d.zero_grad(set_to_none=True)
        return norms

    def state(self) -> dict:
        """The checkpoint entries: opt_g and sched_g, plus opt_d and sched_d when adversarial."""
        state = {"opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict()}
        if self.aux_params:
            state |= {"opt_d": self.opt_d.state_dict(), "sched_d": self.sched_d.state_dict()}
        return state

    def load(self, state: dict) -> None:
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.aux_params:
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
