"""CPU end-to-end training: loss falls, only adapters move, kill+resume is exact, torchrun works."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maa_train.config import ConfigError, load_config
from maa_train.trainer import Trainer, TrainingDiverged
from tests.maa_train.shardkit import write_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=28, patch_size=4)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), [12, 12, 12, 8])


def _cfg(model, data, out, **over):
    base = {
        "model": {"path": str(model)},
        "adapter": {"bottleneck": 16, "attn_dim": 16, "heads": 2},
        "discriminator": {"width": 32, "blocks": 1},
        "optim": {"adapter_lr": 3e-3, "disc_lr": 1e-3, "warmup_frac": 0.0},
        "data": {"train": [str(data)], "val_fraction": 0.25, "batch_size": 4, "workers": 0, "shuffle_buffer": 4},
        "train": {"max_steps": 8, "precision": "fp32", "device": "cpu", "deterministic": True, "log_every": 1,
                  "val_every": 4, "ckpt_every": 2, "out_dir": str(out), "progress": False},
    }
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def test_training_lowers_loss_and_moves_only_adapters(tiny_model, dataset, tmp_path):
    trainer = Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 10, "train.val_every": 10}))
    backbone = {k: v.clone() for k, v in trainer.student.model.state_dict().items()}
    before = trainer.validate()
    summary = trainer.fit()
    after = trainer.validate()
    assert after < before
    for k, v in trainer.student.model.state_dict().items():
        assert torch.equal(v, backbone[k]), f"backbone weight {k} changed"
    final = load_file(str(next((tmp_path / "final").glob("*.safetensors"))))
    assert any(("alpha" in k) and v.abs().sum() > 0 for k, v in final.items())
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"distill", "adv", "disc", "lr"} <= set(lines[0]) and summary.steps == 10


def _final_weights(out: Path) -> dict:
    return load_file(str(next((out / "final").glob("*.safetensors"))))


def _cli(cfg_path: Path, *extra):
    return [sys.executable, "-m", "maa_train.cli", "--config", str(cfg_path), *extra]


def _write_cfg(tiny_model, dataset, out) -> Path:
    cfg = _cfg(tiny_model, dataset, out)
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(cfg.model_dump()))  # JSON is YAML
    return path


def test_kill_and_resume_equals_uninterrupted(tiny_model, dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    straight = _write_cfg(tiny_model, dataset, tmp_path / "straight")
    subprocess.run(_cli(straight), check=True, env=env, capture_output=True, cwd=ROOT)

    killed = _write_cfg(tiny_model, dataset, tmp_path / "killed")
    proc = subprocess.Popen(_cli(killed), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts / "step_00000002" / "DONE").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before the kill"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "final").exists()
    subprocess.run(_cli(killed, "--resume"), check=True, env=env, capture_output=True, cwd=ROOT)

    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_torchrun_two_cpu_processes(tiny_model, dataset, tmp_path):
    cfg = _write_cfg(tiny_model, dataset, tmp_path / "ddp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29617",
           "-m", "maa_train.cli", "--config", str(cfg), "--set", "train.max_steps=3"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["images"] == 3 * 4 * 2


def test_corrupt_sample_is_skipped_and_counted(tiny_model, tmp_path):
    data = write_dataset(tmp_path / "data", [8, 8], corrupt={"s0-k003", "s1-k001"})
    trainer = Trainer(_cfg(tiny_model, data, tmp_path / "out", **{"train.max_steps": 3, "data.val_fraction": 0.5}))
    summary = trainer.fit()
    assert summary.steps == 3 and summary.skipped_samples >= 1


def test_nan_loss_stops_with_diagnostic(tiny_model, dataset, tmp_path):
    trainer = Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 4}))
    with torch.no_grad():
        trainer.student.trainable_parameters()[0].fill_(float("nan"))
    for p in trainer.student.adapters.parameters():
        if p.dim() == 0:
            p.fill_(1.0)  # open the gates so the NaN reaches the output
    with pytest.raises(TrainingDiverged, match="non-finite"):
        trainer.fit()
    assert json.loads((tmp_path / "diverged.json").read_text())["keys"]


def test_config_errors_name_the_field(tiny_model, dataset, tmp_path):
    with pytest.raises(ConfigError, match="optim.adapter_lr"):
        _cfg(tiny_model, dataset, tmp_path, **{"optim.adapter_lr": -1})
    with pytest.raises(ConfigError, match="train.studnet: unknown key"):
        _cfg(tiny_model, dataset, tmp_path, **{"train.studnet": "maa"})


def test_resume_refuses_another_model(tiny_model, dataset, tmp_path):
    Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 2})).fit()
    from transformers import CLIPVisionConfig, CLIPVisionModel

    other = tmp_path / "other"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=2, image_size=28, patch_size=4)).save_pretrained(other)
    trainer = Trainer(_cfg(other, dataset, tmp_path, **{"train.max_steps": 4, "train.resume": True}))
    with pytest.raises(ValueError, match="num_layers|made for"):
        trainer.fit()
