"""One micro-batch's forward and backward: the frozen teacher on the clean images, the
adapted student on the degraded ones, every objective's terms, and their gradients.

The teacher is the same encoder with adapters disabled (no second copy). The loss values
come back with a flag saying whether every rank's values are finite; the trainer stops
the run (``divergence_report``) before any optimiser step applies non-finite gradients.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from maa_train.data.preprocess import ProcessorSettings, normalise_pairs
from maa_train.objectives.base import Step
from maa_train.train import distributed
from maa_train.train.diagnostics import backward_by_term


def autocast_for(precision: str, device: torch.device):
    """The autocast context of a step: bf16 when the run asks for it, else none."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class StepParts:
    """What a micro-step works on (the encoder pass itself is given per call: it may be compiled)."""
    student: torch.nn.Module
    objectives: torch.nn.Module
    settings: ProcessorSettings
    device: torch.device
    world: int
    autocast: Callable[[], object]
    grad_norms: bool  # loss.grad_norms: per-term gradient norms on measured steps


def micro_step(parts: StepParts, forward, batch: dict, scale: float, step_index: int,
               measure: bool = False) -> tuple[dict[str, torch.Tensor], bool]:
    """(loss terms, all finite on every rank). ``measure``: also each loss term's gradient norm
    at the adapters (log steps only: one more backward pass)."""
    clean, degraded = normalise_pairs(batch["pairs"].to(parts.device, non_blocking=True), parts.settings)
    frozen = parts.objectives.adapters_frozen(step_index)  # discriminator warm-up: no adapter graph
    step = _tokens(parts, forward, clean, degraded, frozen, step_index)
    losses, terms, own = parts.objectives.step_by_term(step)
    if frozen:
        pass  # the adapters' terms are logged but not backpropagated
    elif measure and parts.grad_norms and len(terms) > 0:
        losses |= backward_by_term(terms, parts.student.trainable_parameters(), scale)
    elif terms:
        (sum(terms.values()) * scale).backward()
    if own is not None:
        (own * scale).backward()
    # Checked after the backward passes are queued, so on a GPU the one host sync this costs
    # waits for work already running instead of leaving the GPU idle while backward launches;
    # still before any optimiser step, so non-finite gradients are never applied.
    return losses, distributed.all_finite(list(losses.values()), parts.world)


def _tokens(parts: StepParts, forward, clean, degraded, frozen: bool, step_index: int) -> Step:
    keep = parts.objectives.needs_prefix
    with parts.autocast():
        with torch.no_grad(), parts.student.adapters_disabled():
            teacher = forward(clean, prefix=True) if keep else forward(clean)
        with torch.no_grad() if frozen else nullcontext():
            student = forward(degraded, prefix=True) if keep else forward(degraded)
    p = parts.student.grid.prefix if keep else 0
    return Step(student[:, p:].float(), teacher[:, p:].float(), step_index, parts.autocast,
                student_prefix=student[:, :p].float() if keep else None,
                teacher_prefix=teacher[:, :p].float() if keep else None)


def divergence_report(out: Path, write: bool, step: int, batch: dict, losses: dict, lr: list[float],
                      last_good: Path | None) -> str:
    """Write diverged.json (when ``write``: rank 0) and return the one-line message."""
    info = {"step": step, "losses": {k: float(v.detach()) for k, v in losses.items()},
            "keys": list(batch.get("keys", [])), "lr": lr, "last_good_checkpoint": str(last_good)}
    if write:
        out.mkdir(parents=True, exist_ok=True)
        (out / "diverged.json").write_text(json.dumps(info, indent=2))
    return (f"non-finite loss at step {step}: {info['losses']}; batch keys {info['keys'][:4]}...; "
            f"last good checkpoint: {info['last_good_checkpoint']}")
