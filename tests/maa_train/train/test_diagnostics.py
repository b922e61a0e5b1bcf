"""Adversarial diagnostics and the discriminator's training features on tiny CPU runs:
logged keys and their ranges, the once-only warnings, the warm-up freeze, token selection,
and config validation that names the field."""
import json
import logging

import pytest
import torch

import maa_train.objectives.adversarial as adversarial
from maa_train.objectives.adversarial import adv_weight, select_tokens
from maa_train.train.config import ConfigError, load_config
from maa_train.train.diagnostics import DiscriminatorMonitor, clip_shares
from maa_train.train.trainer import Trainer
from tests.maa_train.data.shardkit import write_dataset
from tests.maa_train.eval.evalkit import one_thread, tiny_clip, train_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    return tiny_clip(root / "model"), write_dataset(root / "data", [12, 12, 8])


def _cfg(tiny, out, *overrides):
    model, data = tiny
    return load_config(base=train_config(model, data, out), overrides=list(overrides))


def _records(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_log_steps_carry_discriminator_accuracy_gradient_shares_lambda_and_gates(tiny, tmp_path):
    summary = Trainer(_cfg(tiny, tmp_path, "train.max_steps=3", "loss.adv_warmup_steps=2",
                           "discriminator.warn_after_steps=0")).fit()
    steps = [r for r in _records(tmp_path) if "disc_acc_real" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert 0 <= r["disc_acc_real"] <= 1 and 0 <= r["disc_acc_fake"] <= 1
        assert r["grad_norm_distill"] >= 0 and r["grad_norm_adv"] >= 0
        assert r["grad_share_distill"] + r["grad_share_adv"] == pytest.approx(1.0)
        assert 0 < r["clip_factor"] <= 1
        assert r["grad_clipped_distill"] == pytest.approx(r["grad_norm_distill"] * r["clip_factor"])
        assert len(r["alpha_mlp"]) == len(r["alpha_pool"]) == 2  # one gate per block of the tiny CLIP
    # lambda ramps 0 -> 0.05 -> 0.1 over adv_warmup_steps=2, measured at steps 0, 1, 2
    assert [r["adv_lambda"] for r in steps] == pytest.approx([0.0, 0.05, 0.1])
    assert steps[0]["grad_norm_adv"] == 0.0  # lambda 0: no adversarial gradient reaches the adapters
    assert steps[-1]["alpha_mlp"] != [0.0, 0.0]  # the gates moved off identity
    diag = summary.diagnostics
    assert diag["means"]["adv_lambda"] == pytest.approx(0.05)
    assert 0 <= diag["means"]["disc_acc_fake"] <= 1 and len(diag["gates"]["alpha_mlp"]) == 2
    assert diag["warnings"] == []
    assert json.loads((tmp_path / "summary.json").read_text())["diagnostics"]["gates"] == diag["gates"]


@pytest.mark.parametrize("forced, names", [((0.5, 0.5), "optim.disc_lr"), ((1.0, 1.0), "loss.adv_weight")])
def test_a_stuck_discriminator_gets_one_warning_naming_the_setting(tiny, tmp_path, monkeypatch, caplog, forced, names):
    monkeypatch.setattr(adversarial, "accuracy", lambda real, fake, kind: tuple(torch.tensor(v) for v in forced))
    with caplog.at_level(logging.WARNING, logger="maa_train.train.diagnostics"):
        summary = Trainer(_cfg(tiny, tmp_path, "train.max_steps=5", "discriminator.warn_after_steps=2")).fit()
    warned = [r.getMessage() for r in caplog.records if r.name == "maa_train.train.diagnostics"]
    assert len(warned) == 1 and names in warned[0]  # once, not at every later step
    assert summary.diagnostics["warnings"] == warned


def test_monitor_resets_when_the_discriminator_leaves_chance():
    m = DiscriminatorMonitor(after=3)
    assert [m.update(s, *acc) for s, acc in enumerate([(0.5, 0.5), (0.5, 0.5), (0.9, 0.2), (0.5, 0.5), (0.5, 0.5)])] \
        == [None] * 5  # never three chance steps in a row
    assert m.update(5, 0.5, 0.5) is not None and m.update(6, 0.5, 0.5) is None
    assert DiscriminatorMonitor(after=0).update(100, 0.5, 0.5) is None  # 0 switches warnings off


def test_clip_shares_scale_each_term_by_the_clip_factor():
    out = clip_shares({"grad_norm_distill": 3.0, "grad_norm_adv": 1.0}, total_norm=4.0, clip=1.0)
    assert out["clip_factor"] == pytest.approx(0.25) and out["grad_clipped_distill"] == pytest.approx(0.75)
    assert out["grad_share_adv"] == pytest.approx(0.25)
    assert clip_shares({"grad_norm_distill": 3.0}, total_norm=0.5, clip=1.0)["clip_factor"] == 1.0


def test_discriminator_warmup_freezes_the_adapters_and_trains_the_discriminator(tiny, tmp_path):
    trainer = Trainer(_cfg(tiny, tmp_path, "train.max_steps=3", "discriminator.warmup_steps=2"))
    snapshots = []
    step_fn = trainer._optimizer_step

    def recording():
        out = step_fn()
        snapshots.append(([p.detach().clone() for p in trainer.student.trainable_parameters()],
                          [p.detach().clone() for p in trainer.aux_params]))
        return out

    adapters0 = [p.detach().clone() for p in trainer.student.trainable_parameters()]
    disc0 = [p.detach().clone() for p in trainer.aux_params]
    trainer._optimizer_step = recording
    trainer.fit()
    changed = lambda before, after: any(not torch.equal(a, b) for a, b in zip(before, after))
    assert not changed(adapters0, snapshots[1][0])  # two warm-up steps: adapters untouched
    assert changed(disc0, snapshots[0][1])  # the discriminator trained from the first step
    assert changed(adapters0, snapshots[2][0])  # after the warm-up the adapters move
    lam = [r["adv_lambda"] for r in _records(tmp_path) if "adv_lambda" in r]
    assert lam == pytest.approx([0.0, 0.0, 0.1])  # lambda starts (unramped here) once the warm-up is over


def test_lambda_ramp_starts_at_the_given_step():
    assert [adv_weight(s, 0.1, warmup_steps=2, start=3) for s in (0, 2, 3, 4, 5, 9)] == pytest.approx(
        [0, 0, 0, 0.05, 0.1, 0.1])
    with pytest.raises(ValueError):
        adv_weight(0, 0.1, warmup_steps=-1)


def test_token_selection_shapes():
    patches, prefix = torch.zeros(2, 9, 4), torch.ones(2, 1, 4)
    assert select_tokens(patches, prefix, "patch").shape == (2, 9, 4)
    assert select_tokens(patches, prefix, "cls").shape == (2, 1, 4)
    assert select_tokens(patches, prefix, "all").shape == (2, 10, 4)
    assert select_tokens(patches, prefix, "all")[:, 0].eq(1).all()  # the prefix comes first
    with pytest.raises(ValueError, match="discriminator.tokens=cls"):
        select_tokens(patches, None, "cls")


@pytest.mark.parametrize("tokens", ["cls", "all"])
def test_discriminator_trains_on_the_selected_tokens(tiny, tmp_path, tokens, monkeypatch):
    seen = []
    forward = adversarial.TokenDiscriminator.forward
    monkeypatch.setattr(adversarial.TokenDiscriminator, "forward", lambda self, x: seen.append(x.shape) or forward(self, x))
    trainer = Trainer(_cfg(tiny, tmp_path, "train.max_steps=1", f"discriminator.tokens={tokens}",
                           "discriminator.width=auto"))
    trainer.fit()
    assert trainer.objectives[1].disc.stem[0].out_features == 64  # auto = 2 x the tiny CLIP's width 32
    grid = trainer.student.grid
    assert {s[1] for s in seen} == {1 if tokens == "cls" else grid.prefix + grid.height * grid.width}


@pytest.mark.parametrize("tokens", ["cls", "all"])
def test_r1_penalty_is_taken_at_the_selected_tokens(tiny, tmp_path, tokens, monkeypatch):
    # Regression: R1 took its penalty at the patch tokens whatever discriminator.tokens said.
    seen = []
    forward = adversarial.TokenDiscriminator.forward
    monkeypatch.setattr(adversarial.TokenDiscriminator, "forward", lambda self, x: seen.append(x.shape) or forward(self, x))
    trainer = Trainer(_cfg(tiny, tmp_path, "train.max_steps=1", f"discriminator.tokens={tokens}",
                           "discriminator.r1_weight=1", "discriminator.r1_interval=1"))
    trainer.fit()
    assert [o.name for o in trainer.objectives] == ["distill", "adv", "r1"]
    grid = trainer.student.grid
    assert {s[1] for s in seen} == {1 if tokens == "cls" else grid.prefix + grid.height * grid.width}


@pytest.mark.parametrize("overrides, field", [
    (["discriminator.width=0"], "discriminator.width"),
    (["loss.adv_warmup_steps=-5"], "loss.adv_warmup_steps"),
    (["loss.adv_ramp_start=-1"], "loss.adv_ramp_start"),
    (["loss.adv_weight=0", "discriminator.r1_weight=1"], "discriminator.r1_weight"),
    (["train.student=mse_only", "discriminator.warmup_steps=10"], "discriminator.warmup_steps"),
    (["discriminator.warmup_steps=2", "train.max_steps=2"], "discriminator.warmup_steps"),
    (["discriminator.betas=[0.5, 1.0]"], "discriminator.betas"),
    (["discriminator.tokens=registers"], "discriminator.tokens"),
    (["discriminator.chance_band=[0.6, 0.7]"], "discriminator.chance_band"),
])
def test_settings_that_cannot_work_fail_at_validation_naming_the_field(tiny, tmp_path, overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _cfg(tiny, tmp_path, *overrides)
