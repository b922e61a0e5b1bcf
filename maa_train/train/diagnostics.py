"""Training diagnostics for adversarial runs: per-term gradient norms at the adapters, the
adapters' gates per block, and a monitor that warns once when the discriminator is stuck at
chance or has collapsed (always catches the fakes), naming the settings to look at.

All of it runs on log steps only: reading a tensor is a device sync, and the per-term
gradients cost one extra backward pass.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from torch import nn

log = logging.getLogger(__name__)

GATES = ("alpha_mlp", "alpha_pool")


def gate_values(adapters: nn.Module | None) -> dict[str, list[float]]:
    """{gate name: [value per block]} for the gates every adapter has (none for LoRA/full)."""
    if adapters is None or len(adapters) == 0:
        return {}
    out = {}
    for gate in GATES:
        values = [getattr(a, gate, None) for a in adapters]
        if all(isinstance(v, torch.Tensor) for v in values):
            out[gate] = [float(v.detach().float().reshape(-1)[0]) for v in values]
    return out


def backward_by_term(parts: dict[str, torch.Tensor], params: list[nn.Parameter],
                     scale: float) -> dict[str, torch.Tensor]:
    """Backward of sum(parts) * scale into ``params``' .grad, measuring each part's gradient
    norm on the way: one backward per part instead of one in all (so only on log steps).

    Returns {"grad_norm_<name>": norm of d(part)/d(params)} for one micro-batch, unscaled."""
    norms: dict[str, torch.Tensor] = {}
    names = list(parts)
    for i, name in enumerate(names):
        part = parts[name]
        if not part.requires_grad:
            norms[f"grad_norm_{name}"] = torch.zeros((), device=part.device)
            continue
        grads = torch.autograd.grad(part, params, retain_graph=i < len(names) - 1, allow_unused=True)
        sq = torch.zeros((), device=part.device)
        for p, g in zip(params, grads):
            if g is None:
                continue
            sq = sq + g.detach().float().pow(2).sum()
            p.grad = g * scale if p.grad is None else p.grad + g * scale
        norms[f"grad_norm_{name}"] = sq.sqrt()
    return norms


def clip_shares(term_norms: dict[str, float], total_norm: float | None, clip: float) -> dict[str, float]:
    """What clipping leaves of each term: the clip factor applied to the whole gradient, each
    term's norm after it, and each term's share of the summed term norms."""
    if not term_norms:
        return {}
    factor = 1.0 if not clip or total_norm is None or total_norm <= clip else clip / (total_norm + 1e-6)
    total = sum(term_norms.values())
    out = {"clip_factor": factor}
    for key, norm in term_norms.items():
        name = key.removeprefix("grad_norm_")
        out[f"grad_clipped_{name}"] = norm * factor
        out[f"grad_share_{name}"] = norm / total if total > 0 else math.nan
    return out


@dataclass
class DiscriminatorMonitor:
    """Warns once per condition when the discriminator accuracy stays, for ``after`` steps,
    in the chance band on both sides, or at ``collapse`` or more on the fakes."""

    after: int = 200
    band: tuple[float, float] = (0.45, 0.55)
    collapse: float = 0.99
    warnings: list[str] = field(default_factory=list)
    _since: dict[str, int | None] = field(default_factory=lambda: {"chance": None, "collapse": None})
    _fired: set[str] = field(default_factory=set)

    def update(self, step: int, acc_real: float, acc_fake: float) -> str | None:
        low, high = self.band
        states = {"chance": low <= acc_real <= high and low <= acc_fake <= high,
                  "collapse": acc_fake >= self.collapse}
        fired = None
        for kind, now in states.items():
            if not now:
                self._since[kind] = None
                continue
            if self._since[kind] is None:
                self._since[kind] = step
            if self.after and kind not in self._fired and step - self._since[kind] + 1 >= self.after:
                self._fired.add(kind)
                fired = self._message(kind, step, acc_real, acc_fake)
                self.warnings.append(fired)
                log.warning(fired)
        return fired

    def _message(self, kind: str, step: int, acc_real: float, acc_fake: float) -> str:
        seen = f"discriminator accuracy real {acc_real:.2f} / fake {acc_fake:.2f} since step {self._since[kind]} (now {step})"
        if kind == "chance":
            return (f"{seen}: it stays at chance, so the adversarial gradient is noise. Look at optim.disc_lr "
                    "(raise it towards the adapter lr), discriminator.width/blocks (scale to the encoder, 'auto'), "
                    "discriminator.warmup_steps (train it alone first)")
        return (f"{seen}: it catches every fake, so the adapters get no useful gradient. Look at "
                "loss.adv_weight and loss.adv_warmup_steps (lambda), optim.disc_lr (lower), "
                "discriminator.width (smaller), discriminator.r1_weight or discriminator.spectral_norm")


class RunningMeans:
    """Means over log steps of the scalar diagnostics, for summary.json."""

    def __init__(self) -> None:
        self._sum: dict[str, float] = {}
        self._n: dict[str, int] = {}

    def add(self, values: dict) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self._sum[k] = self._sum.get(k, 0.0) + float(v)
                self._n[k] = self._n.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self._sum[k] / self._n[k] for k in self._sum}


DIAGNOSTIC_KEYS = ("disc_acc_real", "disc_acc_fake", "adv_lambda", "clip_factor")
DIAGNOSTIC_PREFIXES = ("grad_norm_", "grad_clipped_", "grad_share_")


def is_diagnostic(key: str) -> bool:
    return key in DIAGNOSTIC_KEYS or key.startswith(DIAGNOSTIC_PREFIXES)


class LogStepDiagnostics:
    """What the trainer adds at each log step from that step's values: clipping shares, the
    discriminator monitor's warnings, and the running means summary.json reports."""

    def __init__(self, grad_clip: float, monitor: DiscriminatorMonitor):
        self.grad_clip = grad_clip
        self.monitor = monitor
        self.means = RunningMeans()

    def update(self, step: int, last: dict[str, float]) -> dict[str, float]:
        terms = {k: v for k, v in last.items() if k.startswith("grad_norm_")}
        extra = clip_shares(terms, last.get("grad_norm"), self.grad_clip)
        if "disc_acc_real" in last:
            self.monitor.update(step, last["disc_acc_real"], last["disc_acc_fake"])
        self.means.add({k: v for k, v in (last | extra).items() if is_diagnostic(k)})
        return extra

    def summary(self, adapters) -> dict:
        return {"means": self.means.means(), "gates": gate_values(adapters), "warnings": list(self.monitor.warnings)}
