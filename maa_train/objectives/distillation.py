"""Distillation: MSE between the corrected tokens and the clean teacher's, plus an optional
weight * (1 - cosine)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from maa_train.objectives.base import Objective, Step, Terms, register_objective


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, cosine_weight: float = 0.0) -> torch.Tensor:
    """MSE between student and (detached) teacher tokens, plus optional weight * (1 - cosine)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ")
    student, teacher = student.float(), teacher.detach().float()
    loss = F.mse_loss(student, teacher)
    if cosine_weight:
        loss = loss + cosine_weight * (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    return loss


class Distillation(Objective):
    name = "distill"
    shown = ("distill",)

    def __init__(self, cosine_weight: float = 0.0):
        super().__init__()
        self.cosine_weight = cosine_weight

    def terms(self, step: Step) -> Terms:
        loss = distill_loss(step.student, step.teacher, self.cosine_weight)
        return Terms(logged={"distill": loss}, student=loss)


@register_objective("distill")
def build(cfg, student, built) -> Distillation:
    return Distillation(cfg.loss.cosine_weight)
