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
from tests.maa_train.evalkit import train_config
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
    base = train_config(model, data, out)
    base["adapter"].update(bottleneck=16, attn_dim=16)
    base["discriminator"]["width"] = 32
    base["data"]["val_fraction"] = 0.25
    base["train"].update(max_steps=8, val_every=4, ckpt_every=2)
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def test_training_lowers_loss_and_moves_only_adapters(tiny_model, dataset, tmp_path):
    trainer = Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 10, "train.val_every": 10,
                                                             "train.val_at_start": True}))
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
    assert lines[0]["step"] == 0 and lines[0]["val_l2"] == pytest.approx(before)  # the frozen encoder's baseline
    assert {"distill", "adv", "disc", "lr"} <= set(lines[1]) and summary.steps == 10
    assert summary.best_step == 10 and summary.best_val_l2 < lines[0]["val_l2"]


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
    # What the killed run logged after its checkpoint is replaced, not repeated.
    logged = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "distill" in m] == list(range(1, 9))


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
        for name, p in trainer.student.adapters.named_parameters():
            if "alpha" in name:
                p.fill_(1.0)  # open the gates so the NaN below reaches the output
            elif name.endswith("mlp.0.weight"):
                p.fill_(float("nan"))
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


def test_sigint_stops_at_a_step_with_checkpoint_and_resume_is_exact(tiny_model, dataset, tmp_path, monkeypatch):
    from maa_train.trainer import TrainingInterrupted

    straight = Trainer(_cfg(tiny_model, dataset, tmp_path / "straight", **{"train.deterministic": False}))
    straight.fit()

    cfg = _cfg(tiny_model, dataset, tmp_path / "stopped", **{"train.deterministic": False})
    trainer = Trainer(cfg)
    step = trainer._optimizer_step

    def step_then_ctrl_c():
        out = step()
        if trainer.step == 2:  # the signal lands inside step 3 (a step without a scheduled checkpoint)
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(trainer, "_optimizer_step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="stopped at step 3 .*--resume"):
        trainer.fit()
    assert (tmp_path / "stopped" / "checkpoints" / "step_00000003" / "DONE").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    resumed = Trainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": True})}))
    summary = resumed.fit()
    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "stopped")
    for k in a:
        assert torch.equal(a[k], b[k]), k

    # Resuming a finished run trains nothing and keeps its summary instead of overwriting it.
    saved = (tmp_path / "stopped" / "summary.json").read_text()
    again = Trainer(cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": True})})).fit()
    assert again.steps == summary.steps and again.images == summary.images > 0
    assert (tmp_path / "stopped" / "summary.json").read_text() == saved


def test_data_errors_come_before_model_loading_and_one_path_is_a_list(dataset, tmp_path):
    cfg = load_config(base={"model": {"path": str(tmp_path / "no-model")}, "data": {"train": str(dataset)}})
    assert cfg.data.train == [str(dataset)]
    (tmp_path / "empty").mkdir()
    bad = load_config(base={"model": {"path": str(tmp_path / "no-model")}, "data": {"train": str(tmp_path / "empty")}})
    with pytest.raises(FileNotFoundError, match="no shards"):
        Trainer(bad)


def test_faults_are_summed_over_worker_streams(tiny_model, dataset, tmp_path):
    # Each worker stream reports its own running count; the run's total is their sum, not the max.
    trainer = Trainer(_cfg(tiny_model, dataset, tmp_path))
    trainer._count_faults({"stream": 0, "skipped": 2, "broken_shards": ["x.tar"]})
    trainer._count_faults({"stream": 1, "skipped": 1, "broken_shards": []})
    trainer._count_faults({"stream": 0, "skipped": 3, "broken_shards": ["x.tar"]})
    assert trainer._skipped() == 4 and trainer.broken == {"x.tar"}
    trainer._end_epoch_faults()
    trainer._count_faults({"stream": 1, "skipped": 1, "broken_shards": []})
    assert trainer._skipped() == 5


def test_holdout_says_how_many_training_pairs_it_costs(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from maa_train.trainer import _data
    from tests.maa_train.shardkit import write_shard

    # One source image with many variants spread over every shard: holding out one shard
    # removes most training pairs, which the user must be told about.
    root = tmp_path / "data"
    (root / "shards").mkdir(parents=True)
    for i in range(4):
        keys = [f"img0-v{i}-c0", f"img0-v{i + 4}-c0", f"img{i + 1}-v0-c0"]
        write_shard(root / "shards" / f"{i:06d}.tar", keys, seed=i)
        pq.write_table(pa.table({"key": keys, "status": ["ok"] * 3}), root / "shards" / f"{i:06d}.parquet")
    (root / "dataset.json").write_text(json.dumps({"shards": [f"{i:06d}" for i in range(4)]}))
    cfg = load_config(base={"model": {"path": "unused"}, "data": {"train": [str(root)], "val_fraction": 0.25}})
    with caplog.at_level("INFO", logger="maa_train.trainer"):
        train, val, groups = _data(cfg)
    assert len(val) == 1 and sum(s.count for s in train[0]) == 3
    assert any(r.levelname == "WARNING" and "6 of 9 training pairs (67%)" in r.getMessage() for r in caplog.records)
