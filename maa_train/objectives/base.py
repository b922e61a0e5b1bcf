"""Training objectives as components: each turns (student tokens, teacher tokens) into loss
terms, built from the training config, registered by name.

The trainer only runs the loop: it sums every objective's ``student`` term into the
adapters' loss, sums the ``own`` terms (losses of the objectives' own parameters, such as
the discriminator's) into a second backward pass, optimises ``parameters()`` with the
discriminator's optimiser settings, logs every named term and shows ``shown`` ones in the
progress bar. A new loss is one module with a ``@register_objective`` builder plus its
module name in ``OBJECTIVE_MODULES``; its settings live under ``objectives.<name>``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import torch
from torch import nn


@dataclass
class Step:
    """What one micro-step gives every objective."""
    student: torch.Tensor      # corrected tokens [B, P, D], fp32, with grad
    teacher: torch.Tensor      # clean-teacher tokens, fp32, no grad
    step: int
    autocast: Callable[[], ContextManager]
    # Prefix tokens (CLS, registers) [B, prefix, D] of the same layer, only when an objective
    # asks for them (``needs_prefix``); otherwise None.
    student_prefix: torch.Tensor | None = None
    teacher_prefix: torch.Tensor | None = None


@dataclass
class Terms:
    logged: dict[str, torch.Tensor] = field(default_factory=dict)  # every term, unweighted
    student: torch.Tensor | None = None   # weighted, added to the adapters' loss
    own: torch.Tensor | None = None       # weighted, backpropagated into this objective's parameters
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # diagnostics, not losses (logged only)


class Objective(nn.Module):
    """Base of every objective. Subclasses set ``name`` and ``shown`` and implement ``terms``."""

    name: str = ""
    shown: tuple[str, ...] = ()
    needs_prefix: bool = False  # whether terms() reads Step.student_prefix / teacher_prefix

    def adapters_frozen(self, step: int) -> bool:
        """True while this objective wants the adapters left alone (e.g. a discriminator warm-up)."""
        return False

    def terms(self, step: Step) -> Terms:
        raise NotImplementedError

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors a training checkpoint keeps for this objective (keys unique across objectives)."""
        return {f"{self.name}.{k}": v for k, v in self.state_dict().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        prefix = f"{self.name}."
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if own or len(self.state_dict()):
            self.load_state_dict(own)


# A builder gets the config, the student and the objectives built before it (in registry
# order), and returns the objective or None when the config switches it off.
Builder = Callable[[Any, nn.Module, dict[str, Objective]], "Objective | None"]
OBJECTIVES: dict[str, Builder] = {}

OBJECTIVE_MODULES: tuple[str, ...] = (
    "maa_train.objectives.distillation",
    "maa_train.objectives.adversarial",
    "maa_train.objectives.r1",
)


def register_objective(name: str) -> Callable[[Builder], Builder]:
    def deco(builder: Builder) -> Builder:
        if name in OBJECTIVES:
            raise ValueError(f"objective '{name}' registered twice")
        OBJECTIVES[name] = builder
        return builder

    return deco


def load_all() -> dict[str, Builder]:
    """Every objective, in ``OBJECTIVE_MODULES`` order (build order: later ones may use earlier)."""
    for module in OBJECTIVE_MODULES:
        importlib.import_module(module)

    def rank(item):
        module = item[1].__module__
        return OBJECTIVE_MODULES.index(module) if module in OBJECTIVE_MODULES else len(OBJECTIVE_MODULES)

    return dict(sorted(OBJECTIVES.items(), key=rank))


class Objectives(nn.ModuleList):
    """The objectives of one run, in registry order."""

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(k for o in self for k in o.shown)

    @property
    def needs_prefix(self) -> bool:
        return any(o.needs_prefix for o in self)

    def adapters_frozen(self, step: int) -> bool:
        return any(o.adapters_frozen(step) for o in self)

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [p for o in self for p in o.parameters() if p.requires_grad]

    def step(self, step: Step) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """(all logged terms and metrics, the adapters' loss, the objectives' own loss or None)."""
        logged, parts, own = self.step_by_term(step)
        total = None
        for part in parts.values():
            total = part if total is None else total + part
        return logged, total, own

    def step_by_term(self, step: Step) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor | None]:
        """As ``step``, with the adapters' loss kept apart per objective name (for gradient norms)."""
        logged: dict[str, torch.Tensor] = {}
        parts: dict[str, torch.Tensor] = {}
        own = None
        for objective in self:
            t = objective.terms(step)
            logged |= t.logged | t.metrics
            if t.student is not None:
                parts[objective.name] = t.student
            if t.own is not None:
                own = t.own if own is None else own + t.own
        return logged, parts, own

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v for o in self for k, v in o.state().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for objective in self:
            objective.load_state(state)


def build_objectives(cfg, student: nn.Module) -> Objectives:
    built: dict[str, Objective] = {}
    for name, builder in load_all().items():
        objective = builder(cfg, student, built)
        if objective is not None:
            built[name] = objective
    return Objectives(built.values())
