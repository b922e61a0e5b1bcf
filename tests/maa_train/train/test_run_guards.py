"""Guards around a run: batch semantics, a reused out_dir, resuming with other settings or
from a damaged checkpoint, a deleted held-out shard, LoRA settings, and one-line CLI errors."""
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch

from maa_train.train import cli
from maa_train.train.batch import resolve_batch
from maa_train.train.config import ConfigError, load_config
from maa_train.train.out_dir import OutDirInUseError
from maa_train.train.resume_check import ResumeMismatchError
from maa_train.train.trainer import Trainer
from tests.maa_train.data.shardkit import write_dataset
from tests.maa_train.eval.evalkit import one_thread, tiny_clip, train_config  # noqa: F401 (fixture)
from tests.maa_train.tiny_models import save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), [8, 8, 8, 8])


def _cfg(model, data, out, **over):
    base = train_config(model, data, out)
    base["adapter"].update(bottleneck=8, attn_dim=8)
    base["discriminator"]["width"] = 16
    base["data"].update(val_fraction=0.25, batch_size=4, workers=0)
    base["train"].update(max_steps=2, val_every=2, ckpt_every=1, progress=False)
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


# -- batch semantics -----------------------------------------------------------------------
def test_global_batch_is_split_over_ranks_and_accumulation(model, data, tmp_path):
    cfg = _cfg(model, data, tmp_path, **{"data.global_batch_size": 32, "data.batch_size": 32})
    assert [(p.per_rank, p.accum) for p in (resolve_batch(cfg, w) for w in (1, 8))] == [(32, 1), (4, 1)]
    capped = _cfg(model, data, tmp_path, **{"data.global_batch_size": 32, "data.batch_size": 6})
    plan = resolve_batch(capped, 2)  # 16 per rank, at most 6 at once: 4 x 4
    assert (plan.per_rank, plan.accum, plan.global_batch) == (4, 4, 32)
    with pytest.raises(ConfigError, match=r"global_batch_size=32 is not divisible by the world size 3"):
        resolve_batch(cfg, 3)
    with pytest.raises(ConfigError, match="grad_accum=2 and data.global_batch_size=32"):
        resolve_batch(_cfg(model, data, tmp_path, **{"data.global_batch_size": 32, "optim.grad_accum": 2}), 1)
    assert resolve_batch(_cfg(model, data, tmp_path), 8).global_batch == 32  # batch_size alone: per GPU


def test_paper_config_says_a_global_batch_of_32():
    cfg = load_config(Path(__file__).resolve().parents[3] / "pipelines/configs/maa-paper.yaml")
    assert cfg.data.global_batch_size == 32
    assert cfg.model.feature_layer is None and cfg.model.use_projector is None  # the LLaVA's own choice
    assert [resolve_batch(cfg, w).global_batch for w in (1, 2, 4, 8)] == [32] * 4


def test_trainer_runs_the_derived_micro_batch(model, data, tmp_path):
    trainer = Trainer(_cfg(model, data, tmp_path, **{"data.global_batch_size": 4, "data.batch_size": 2}))
    assert (trainer.cfg.data.batch_size, trainer.cfg.optim.grad_accum) == (2, 2)
    assert trainer.fit().images == 2 * 4


# -- the out_dir of another run ------------------------------------------------------------
def test_reused_out_dir_is_refused_unless_resume_or_overwrite(model, data, tmp_path):
    Trainer(_cfg(model, data, tmp_path, **{"train.max_steps": 3})).fit()
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(OutDirInUseError, match=r"holds another run \(checkpoints.*--resume.*--overwrite"):
        Trainer(_cfg(model, data, tmp_path))
    assert (tmp_path / "metrics.jsonl").read_text() == before  # nothing of the old run touched
    Trainer(_cfg(model, data, tmp_path, **{"train.overwrite": True})).fit()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000001", "step_00000002"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2


# -- resuming ----------------------------------------------------------------------------
def test_resume_with_other_adapter_settings_names_them(model, data, tmp_path):
    Trainer(_cfg(model, data, tmp_path)).fit()
    other = Trainer(_cfg(model, data, tmp_path, **{"train.resume": True, "train.max_steps": 3,
                                                   "adapter.bottleneck": 4}))
    with pytest.raises(ResumeMismatchError, match=r"adapter.bottleneck: 8 -> 4"):
        other.resume()


def _damage(folder: Path, what: str) -> str:
    if what == "state":  # whatever file holds the optimiser/RNG state (state.pt, or JSON + tensors)
        victim = next(p for p in sorted(folder.iterdir()) if p.name.startswith("state"))
    else:
        victim = folder / what
    data = victim.read_bytes()
    victim.write_bytes(b"\xff\xfe not json" if what == "config.json" else data[: len(data) // 2])
    return victim.name


@pytest.mark.parametrize("what", ["trainable.safetensors", "config.json", "state"])
def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact(model, data, tmp_path, caplog, what):
    Trainer(_cfg(model, data, tmp_path, **{"train.max_steps": 3})).fit()
    latest = tmp_path / "checkpoints" / "step_00000003"
    _damage(latest, what)
    resumed = Trainer(_cfg(model, data, tmp_path, **{"train.resume": True, "train.max_steps": 4}))
    with caplog.at_level(logging.WARNING):
        assert resumed.resume()
    assert resumed.step == 2
    assert any("step_00000003" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)


def test_deleted_held_out_shard_is_reported_like_a_training_shard(model, tmp_path):
    data = write_dataset(tmp_path / "data", [8, 8, 8, 8])
    trainer = Trainer(_cfg(model, data, tmp_path / "out"))
    gone = trainer.val_shards[0].url
    Path(gone).unlink()
    with pytest.raises(ValueError, match="validation read no sample"):  # the only held-out shard
        trainer.fit()
    assert gone in trainer.faults.broken


# -- LoRA settings -------------------------------------------------------------------------
def test_lora_settings_from_config_reach_the_student(model, data, tmp_path):
    cfg = _cfg(model, data, tmp_path, **{"train.student": "lora", "lora.rank": 4, "lora.alpha": 8,
                                         "lora.targets": r".*self_attn\.(q_proj|v_proj)"})
    trainer = Trainer(cfg)
    assert trainer.student.lora == {"rank": 4, "lora_alpha": 8.0, "lora_dropout": 0.0,
                                    "targets": r".*self_attn\.(q_proj|v_proj)"}
    shapes = {n: tuple(p.shape) for n, p in trainer.student.trainable_state_dict().items()}
    assert shapes and all(("q_proj" in n or "v_proj" in n) for n in shapes)
    assert all(4 in s for s in shapes.values())
    with pytest.raises(ConfigError, match=r"lora.targets: .*not a regular expression"):
        _cfg(model, data, tmp_path, **{"lora.targets": "'(unclosed'"})
    with pytest.raises(ConfigError, match=r"lora.rank"):
        _cfg(model, data, tmp_path, **{"lora.rank": 0})
    with pytest.raises(ValueError, match="lora.targets 'nothing_here' matches no module"):
        Trainer(_cfg(model, data, tmp_path / "x", **{"train.student": "lora", "lora.targets": "nothing_here"}))


# -- the trainer on a LLaVA follows its own feature layer --------------------------------------
def test_llava_run_trains_the_layers_the_language_model_reads(data, tmp_path):
    llava = save_tiny("llava", tmp_path)
    trainer = Trainer(_cfg(llava, data, tmp_path / "out"))
    assert (trainer.student.feature_layer, trainer.student.use_projector) == (-2, True)
    assert len(trainer.student.adapters) == 1  # 2 blocks, hidden state -2: the last one cannot matter


# -- one-line CLI errors -------------------------------------------------------------------
def _run_cli(argv, capsys):
    code = cli.main(argv)
    err = capsys.readouterr().err
    return code, err


def _config_file(model, data, tmp_path) -> Path:
    cfg = _cfg(model, data, tmp_path / "out")
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg.model_dump()))
    return path


@pytest.mark.parametrize("case", ["set_unclosed", "non_utf8", "cuda", "reused_out_dir"])
def test_cli_errors_are_one_line_exit_2(model, data, tmp_path, capsys, case):
    path = _config_file(model, data, tmp_path)
    argv = ["--config", str(path)]
    if case == "set_unclosed":
        argv += ["--set", "data.train=[unclosed"]
        want = "data.train"
    elif case == "non_utf8":
        path.write_bytes(b"model: {path: \xff\xfe}\n")
        want = "not UTF-8"
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        argv += ["--set", "train.device=cuda"]
        want = "CUDA is not available"
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "metrics.jsonl").write_text("{}\n")
        want = "--overwrite"
    code, err = _run_cli(argv, capsys)
    assert code == 2
    assert "Traceback" not in err and want in err
    assert len([line for line in err.splitlines() if line.startswith("maa-train: error")]) == 1


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


def test_official_import_refuses_a_pickle_without_running_it(tmp_path, capsys):
    from maa_train.students.import_cli import main

    marker = tmp_path / "marker"
    bad = tmp_path / "maa.pth"
    torch.save({"x": _Marker(str(marker))}, bad)
    assert main([str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists() and "Traceback" not in err and "expected a state dict" in err
    plain = tmp_path / "list.pth"
    torch.save([1, 2], plain)
    assert main([str(plain), "--out", str(tmp_path / "out")]) == 2
    assert "found a list" in capsys.readouterr().err
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    assert main([str(text), "--out", str(tmp_path / "out")]) == 2
    assert "not a torch tensor checkpoint" in capsys.readouterr().err


def test_eval_refuses_a_non_safetensors_adapter_checkpoint(model, data, tmp_path, capsys):
    from maa_train.eval.cli import main

    file = tmp_path / "maa.pth"
    torch.save({"a": torch.zeros(1)}, file)
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"kind": "maa", "hidden_size": 32, "num_layers": 2}))
    (folder / "adapters.safetensors").write_bytes(pickle.dumps({"a": 1}))
    for spec, want in ((f"a={file}", "is a file; expected an adapter checkpoint folder"),
                       (f"a={folder}", "not a readable safetensors file")):
        code = main(["--model", str(model), "--data", str(data), "--adapters", spec, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and want in err and "Traceback" not in err
