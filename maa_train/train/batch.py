"""Batch semantics: a global batch (the paper's 32) split into per-GPU micro-batches.

`data.batch_size` alone is per GPU (a `torchrun --nproc-per-node 8` run of it sees 8x the
images per step). `data.global_batch_size` fixes the images per optimiser step instead; the
per-GPU micro-batch and the gradient accumulation are derived from it and the world size,
with `data.batch_size` as the largest micro-batch one GPU takes.
"""
from __future__ import annotations

from dataclasses import dataclass

from maa_train.train.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class BatchPlan:
    per_rank: int  # micro-batch per GPU and forward pass
    accum: int     # micro-batches per optimiser step
    world: int

    @property
    def global_batch(self) -> int:
        return self.per_rank * self.accum * self.world

    def describe(self) -> str:
        return (f"global batch {self.global_batch} = {self.world} rank(s) x {self.per_rank} per GPU x "
                f"{self.accum} accumulation step(s)")


def resolve_batch(cfg: TrainConfig, world: int) -> BatchPlan:
    """The batch plan of `cfg` on `world` ranks; a ConfigError names the numbers that do not fit."""
    d, accum = cfg.data, cfg.optim.grad_accum
    if d.global_batch_size is None:
        return BatchPlan(per_rank=d.batch_size, accum=accum, world=world)
    total = d.global_batch_size
    if accum != 1:
        raise ConfigError(f"optim.grad_accum={accum} and data.global_batch_size={total} both set the step's size: "
                          "give one (accumulation is derived from the global batch)")
    if total % world:
        raise ConfigError(f"data.global_batch_size={total} is not divisible by the world size {world}: each rank "
                          f"would take {total / world:g} images; use a multiple of {world}")
    per_rank = total // world
    # The fewest accumulation steps whose micro-batch fits data.batch_size and splits the
    # rank's share exactly (no rank sees a ragged micro-batch).
    for steps in range(-(-per_rank // d.batch_size), per_rank + 1):
        if per_rank % steps == 0:
            return BatchPlan(per_rank=per_rank // steps, accum=steps, world=world)
    raise AssertionError("unreachable: steps == per_rank always divides")


def apply_batch(cfg: TrainConfig, plan: BatchPlan) -> TrainConfig:
    """A copy of `cfg` whose data.batch_size and optim.grad_accum are the plan's (what ran is
    what the checkpoints record)."""
    out = cfg.model_copy(deep=True)
    out.data.batch_size = plan.per_rank
    out.optim.grad_accum = plan.accum
    return out
