import pytest
import torch

from maa_train.students.adapter import AdapterConfig
from maa_train.students.baselines import STUDENT_KINDS, make_student
from maa_train.students.checkpoint import load_adapters, save_adapters
from maa_train.encoders.load import load_vision_model
from tests.maa_train.tiny_models import pixels, tiny_models  # noqa: F401

CFG = AdapterConfig(bottleneck=8, attn_dim=8, heads=2, window=3)


def _open_gates(student):
    with torch.no_grad():
        for adapter in student.adapters:
            for name in ("alpha_mlp", "alpha_pool"):
                if hasattr(adapter, name):
                    getattr(adapter, name).fill_(0.2)


@pytest.mark.parametrize("kind", STUDENT_KINDS)
def test_each_student_trains_one_step(tiny_models, kind, tmp_path):
    model, info = load_vision_model(tiny_models["llava"])
    student = make_student(kind, model, CFG, use_projector=True, info=info)
    assert student.kind == kind and student.adversarial == (kind != "mse_only")
    x = pixels()
    with torch.no_grad():
        teacher = student.features(x, adapters=False)
        assert torch.equal(student.features(x), teacher)  # every student starts as the frozen encoder
    _open_gates(student)
    params = student.trainable_parameters()
    assert params and all(p.requires_grad for p in params)
    trainable_ids = {id(p) for p in params}
    opt = torch.optim.SGD(params, lr=0.5)
    before = {n: p.clone() for n, p in student.trainable_state_dict().items()}
    loss = (student.features(x + torch.randn_like(x)) - teacher).square().mean()
    loss.backward()
    for p in student.parameters():
        if id(p) not in trainable_ids:
            assert p.grad is None
    opt.step()
    after = student.trainable_state_dict()
    assert any(not torch.equal(before[n], after[n]) for n in before)
    with torch.no_grad():
        assert torch.equal(student.features(x, adapters=False), teacher)  # teacher unchanged by the step
        assert not torch.equal(student.features(x), teacher)
    # the trainable state round-trips through a checkpoint into a fresh student
    save_adapters(tmp_path, student)
    fresh = make_student(kind, load_vision_model(tiny_models["llava"])[0], CFG, use_projector=True)
    load_adapters(tmp_path, fresh)
    with torch.no_grad():
        assert torch.allclose(fresh.features(x), student.features(x))


def test_lora_targets_only_vision_attention(tiny_models):
    model, _ = load_vision_model(tiny_models["llava"], keep_language_model=True)
    student = make_student("lora", model, CFG)
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert names and all("vision_tower" in n and ".self_attn." in n for n in names)
    assert {n.split(".self_attn.")[1].split(".")[0] for n in names} == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert len(student.trainable_parameters()) == len(names)


def test_unknown_kind():
    with pytest.raises(ValueError, match=r"allowed: \['maa', 'mse_only', 'bottleneck', 'lora', 'full'\]"):
        make_student("prefix", None)


def test_full_finetune_teacher_copy_is_bare(tmp_path):
    """The frozen copy holds the blocks only: no hooks, so no hidden copy of the whole student."""
    from maa_train.students.baselines import make_student
    from maa_train.encoders.load import load_vision_model
    from tests.maa_train.tiny_models import save_tiny

    model, info = load_vision_model(save_tiny("clip", tmp_path))
    student = make_student("full", model, info=info)
    assert all(not b._forward_pre_hooks and not b._forward_hooks for b in student.teacher_blocks)
    assert any(b._forward_pre_hooks for b in student.blocks)
