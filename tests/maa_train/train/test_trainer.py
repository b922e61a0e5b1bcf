"""CPU end-to-end training: loss falls, only adapters move, kill+resume is exact, torchrun works."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maa_format import FORMAT
from maa_train.train import train_state
from maa_train.train.config import ConfigError, load_config
from maa_train.train.faults import DataFaults
from maa_train.train.trainer import Trainer, TrainingDiverged
from tests.maa_train.eval.evalkit import train_config
from tests.maa_train.data.shardkit import write_dataset

ROOT = Path(__file__).resolve().parents[3]


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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # As the CLI subprocesses below (OMP_NUM_THREADS=1): in-process and subprocess runs then
    # sum in the same order and can be compared bit for bit. Tiny matrices gain nothing from threads.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def straight(tiny_model, dataset, tmp_path_factory):
    """The default config trained through without interruption: what stopped-and-resumed runs must equal."""
    out = tmp_path_factory.mktemp("straight")
    Trainer(_cfg(tiny_model, dataset, out)).fit()
    return out


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
    # What a throughput run needs: images/s without warm-up and validation, world size, memory per rank.
    assert lines[1]["world_size"] == 1 and lines[1]["images_per_s"] > 0 and len(lines[1]["rss_gb"]) == 1
    assert summary.world_size == 1 and summary.device == "cpu" and summary.train_images_per_s > 0
    assert summary.warmup_s > 0 and summary.peak_memory_allocated_gb is None and len(summary.peak_rss_gb) == 1


def _final_weights(out: Path) -> dict:
    return load_file(str(next((out / "final").glob("*.safetensors"))))


def _cli(cfg_path: Path, *extra):
    return [sys.executable, "-m", "maa_train.train.cli", "--config", str(cfg_path), *extra]


def _write_cfg(tiny_model, dataset, out) -> Path:
    cfg = _cfg(tiny_model, dataset, out)
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(cfg.model_dump()))  # JSON is YAML
    return path


def test_kill_and_resume_equals_uninterrupted(tiny_model, dataset, straight, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
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

    a, b = _final_weights(straight), _final_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # What the killed run logged after its checkpoint is replaced, not repeated.
    logged = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "distill" in m] == list(range(1, 9))


def test_torchrun_two_cpu_processes(tiny_model, dataset, tmp_path):
    cfg = _write_cfg(tiny_model, dataset, tmp_path / "ddp")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "maa_train.train.cli", "--config", str(cfg), "--set", "train.max_steps=3"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-30000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["images"] == 3 * 4 * 2
    assert summary["world_size"] == 2 and len(summary["peak_rss_gb"]) == 2 and min(summary["peak_rss_gb"]) > 0


def test_torchrun_ends_when_one_rank_fails_alone(tiny_model, tmp_path):
    # A corrupt sample with on_error=raise fails only the rank that reads it; that rank must
    # leave at once (torchrun then ends the job) rather than wait for peers that are waiting
    # for it in the next all-reduce.
    data = write_dataset(tmp_path / "data", [8, 8, 8, 8], corrupt={"s1-k000", "s1-k001"})
    cfg = _cfg(tiny_model, data, tmp_path / "ddp", **{"data.on_error": "raise", "train.max_steps": 40,
                                                     "train.val_every": 100})
    path = tmp_path / "ddp.json"
    path.write_text(json.dumps(cfg.model_dump()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "maa_train.train.cli", "--config", str(path)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert "s1-k00" in done.stderr  # the failing rank names the sample
    assert not (tmp_path / "ddp" / "final").exists()


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


def test_sigint_stops_at_a_step_with_checkpoint_and_resume_is_exact(tiny_model, dataset, straight, tmp_path,
                                                                      monkeypatch):
    from maa_train.train.trainer import TrainingInterrupted

    cfg = _cfg(tiny_model, dataset, tmp_path / "stopped")
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
    a, b = _final_weights(straight), _final_weights(tmp_path / "stopped")
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


def test_faults_are_summed_over_worker_streams():
    # Each worker stream reports its own running count; the run's total is their sum, not the max.
    faults = DataFaults()
    faults.count({"stream": 0, "skipped": 2, "broken_shards": ["x.tar"]})
    faults.count({"stream": 1, "skipped": 1, "broken_shards": []})
    faults.count({"stream": 0, "skipped": 3, "broken_shards": ["x.tar"]})
    assert faults.total() == 4 and faults.broken == {"x.tar"}
    faults.end_epoch()
    faults.count({"stream": 1, "skipped": 1, "broken_shards": []})
    assert faults.total() == 5


def test_holdout_says_how_many_training_pairs_it_costs(tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from maa_train.train.holdout import training_data
    from tests.maa_train.data.shardkit import write_shard

    # One source image with many variants spread over every shard: holding out one shard
    # removes most training pairs, which the user must be told about.
    root = tmp_path / "data"
    (root / "shards").mkdir(parents=True)
    for i in range(4):
        keys = [f"img0-v{i}-c0", f"img0-v{i + 4}-c0", f"img{i + 1}-v0-c0"]
        write_shard(root / "shards" / f"{i:06d}.tar", keys, seed=i)
        pq.write_table(pa.table({"key": keys, "status": ["ok"] * 3}), root / "shards" / f"{i:06d}.parquet")
    (root / "dataset.json").write_text(json.dumps({"format": FORMAT, "shards": [f"{i:06d}" for i in range(4)]}))
    cfg = load_config(base={"model": {"path": "unused"}, "data": {"train": [str(root)], "val_fraction": 0.25}})
    with caplog.at_level("INFO", logger="maa_train.train.holdout"):
        train, val, groups = training_data(cfg)
    assert len(val) == 1 and sum(s.count for s in train[0]) == 3
    assert any(r.levelname == "WARNING" and "6 of 9 training pairs (67%)" in r.getMessage() for r in caplog.records)


def test_compiled_training_matches_eager(tiny_model, dataset, straight, tmp_path, monkeypatch):
    # Dynamo and AOTAutograd through the adapter hooks (the teacher pass with adapters off under
    # no_grad, the student pass with them on). The aot_eager backend leaves out Inductor's code
    # generation, which takes about a minute cold on 2 CPU cores.
    import torch._dynamo

    compiled = []

    def compile_(fn, **kw):
        compiled.append(fn)
        return real_compile(fn, **{**kw, "backend": "aot_eager"})

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", compile_)
    torch._dynamo.reset()
    trainer = Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.compile": True, "train.max_steps": 2}))
    trainer.fit()
    assert compiled == [trainer.student.features]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2
    # No graph break: the whole encoder pass with its adapter hooks compiles as one graph.
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])
    torch._dynamo.reset()

    def losses(out):  # a step's losses come before its update: steps 1-2 do not depend on max_steps
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        keep = ("distill", "adv", "disc", "grad_norm")
        return [{k: r[k] for k in keep} for r in rows if r["step"] <= 2 and "distill" in r]

    got, want = losses(tmp_path), losses(straight)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-5)


def test_resume_with_other_max_steps_warns_and_follows_the_new_schedule(tiny_model, dataset, tmp_path, caplog):
    Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 2})).fit()
    longer = Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 4, "train.resume": True}))
    with caplog.at_level("WARNING", logger="maa_train.train.checkpointing"):
        summary = longer.fit()
    warnings = [r.getMessage() for r in caplog.records if "schedule" in r.getMessage()]
    assert len(warnings) == 1 and "train.max_steps 2 -> 4" in warnings[0]
    assert "set train.max_steps=2" in warnings[0]  # the way back to the checkpointed schedule
    assert summary.steps == 4
    # The learning rate follows the 4-step cosine: logged after step 3, the rate for step 4.
    rows = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    assert lrs[3] == pytest.approx(0.5 * longer.cfg.optim.adapter_lr * (1 + math.cos(math.pi * 3 / 4)))

    caplog.clear()
    same = Trainer(_cfg(tiny_model, dataset, tmp_path, **{"train.max_steps": 4, "train.resume": True}))
    with caplog.at_level("WARNING", logger="maa_train.train.checkpointing"):
        same.fit()  # already done: nothing to train, and nothing to warn about
    assert not [r for r in caplog.records if "schedule" in r.getMessage()]


@pytest.mark.gpu
def test_cuda_bf16_training_reports_memory_and_resumes(tiny_model, dataset, tmp_path):
    over = {"train.device": "cuda", "train.precision": "bf16", "train.max_steps": 2, "train.ckpt_every": 1}
    summary = Trainer(_cfg(tiny_model, dataset, tmp_path, **over)).fit()
    assert summary.device.startswith("cuda") and summary.world_size == 1
    assert len(summary.peak_memory_allocated_gb) == 1 and 0 < summary.peak_memory_allocated_gb[0]
    assert summary.peak_memory_reserved_gb[0] >= summary.peak_memory_allocated_gb[0]
    _, _, state = train_state.load(tmp_path / "checkpoints" / "step_00000002")  # no pickle: tensors on the CPU
    assert state["rng"]["cuda"].dtype == torch.uint8 and state["opt_g"]["state"][0]["exp_avg"].device.type == "cpu"
    resumed = Trainer(_cfg(tiny_model, dataset, tmp_path, **over | {"train.max_steps": 3, "train.resume": True}))
    assert resumed.fit().steps == 3
    assert all(v.is_cuda for s in resumed.optim.opt_g.state.values() for v in s.values() if torch.is_tensor(v) and v.dim())
