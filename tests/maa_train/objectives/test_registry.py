"""Every registered objective satisfies the contract the trainer relies on."""
import pytest
import torch
from contextlib import nullcontext
from types import SimpleNamespace

from maa_train.objectives.base import OBJECTIVES, Objective, Step, Terms, build_objectives, load_all
from maa_train.train.config import load_config

CFG = load_config(base={"model": {"path": "m"}, "data": {"train": ["d"]},
                        "discriminator": {"width": 8, "blocks": 1, "r1_weight": 1.0, "r1_interval": 1}})
STUDENT = SimpleNamespace(adversarial=True, feature_dim=6)


def test_default_config_builds_distill_adv_r1_in_order():
    assert [o.name for o in build_objectives(CFG, STUDENT)] == list(load_all()) == ["distill", "adv", "r1"]
    off = CFG.model_copy(update={"loss": CFG.loss.model_copy(update={"adv_weight": 0.0})})
    assert [o.name for o in build_objectives(off, STUDENT)] == ["distill"]
    assert [o.name for o in build_objectives(CFG, SimpleNamespace(adversarial=False, feature_dim=6))] == ["distill"]


@pytest.mark.parametrize("name", sorted(load_all()))
def test_objective_contract(name):
    objectives = build_objectives(CFG, STUDENT)
    objective = next(o for o in objectives if o.name == name)
    assert isinstance(objective, Objective) and OBJECTIVES[name]
    student = torch.randn(2, 4, 6, requires_grad=True)
    terms = objective.terms(Step(student, torch.randn(2, 4, 6), step=0, autocast=nullcontext))
    assert isinstance(terms, Terms) and terms.logged
    assert set(objective.shown) <= set(terms.logged) | set(terms.metrics)  # the progress bar shows both
    for value in (*terms.logged.values(), terms.student, terms.own):
        assert value is None or (value.dim() == 0 and torch.isfinite(value))
    if terms.student is not None:
        terms.student.backward(retain_graph=True)
        assert student.grad is not None
    state = objective.state()
    objective.load_state(state)  # a checkpoint's tensors load back
