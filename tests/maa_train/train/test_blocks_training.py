"""`adapter.blocks` through the trainer: only the chosen adapters are built and move, the
checkpoint records the blocks, resume and evaluation use them and refuse another choice."""
import json

import pytest
import torch
from safetensors.torch import load_file

from maa_train.eval.evaluate import AdapterSpec, EvalOptions
from maa_train.eval.model_rows import build_models
from maa_train.train.config import load_config
from maa_train.train.resume_check import ResumeMismatchError
from maa_train.train.trainer import Trainer
from tests.maa_train.data.shardkit import write_dataset
from tests.maa_train.eval.evalkit import one_thread, tiny_clip, train_config  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    return {"model": tiny_clip(root / "clip4", layers=4), "data": write_dataset(root / "data", [12, 12, 8])}


def _cfg(setup, out, **over):
    base = train_config(setup["model"], setup["data"], out)
    base["train"].update(max_steps=4, ckpt_every=2, val_every=4)
    return load_config(base=base, overrides=[f"{k}={v}" for k, v in over.items()])


def test_train_resume_and_eval_with_last_two_blocks(setup, tmp_path):
    trainer = Trainer(_cfg(setup, tmp_path, **{"adapter.blocks": "[-2, -1]", "train.max_steps": 2}))
    assert trainer.student.adapter_blocks == (2, 3)
    backbone = {k: v.clone() for k, v in trainer.student.model.state_dict().items()}
    start = {k: v.clone() for k, v in trainer.student.trainable_state_dict().items()}
    trainer.fit()
    assert all(torch.equal(v, backbone[k]) for k, v in trainer.student.model.state_dict().items())
    final = load_file(str(tmp_path / "final" / "adapters.safetensors"))
    assert final.keys() == start.keys() and {k.split(".")[1] for k in final} == {"0", "1"}
    assert any(not torch.equal(final[k], start[k]) for k in final)
    config = json.loads((tmp_path / "final" / "adapter_config.json").read_text())
    assert config["adapter_blocks"] == [2, 3] and config["adapter"]["blocks"] == [-2, -1]

    # Resume with the same blocks (spelled positively) continues; another choice is refused.
    resumed = Trainer(_cfg(setup, tmp_path, **{"adapter.blocks": "[2, 3]", "train.resume": True}))
    assert resumed.fit().steps == 4
    refused = Trainer(_cfg(setup, tmp_path, **{"adapter.blocks": "[-1]", "train.resume": True,
                                               "train.max_steps": 6}))
    with pytest.raises(ResumeMismatchError, match=r"adapter.blocks: checkpoint has adapters on blocks \[2, 3\] "
                                                  r".*model on \[3\]"):
        refused.fit()
    default = Trainer(_cfg(setup, tmp_path, **{"train.resume": True, "train.max_steps": 6}))
    with pytest.raises(ResumeMismatchError, match=r"\[2, 3\] .*model on \[0, 1, 2, 3\] \(adapter.blocks null\)"):
        default.fit()

    # Evaluation rebuilds the student from the checkpoint's blocks and reproduces its features.
    models, _, _, _ = build_models(setup["model"], [AdapterSpec("sub", tmp_path / "final")],
                                    EvalOptions(device="cpu"), torch.device("cpu"))
    student = models[1].student
    assert student.adapter_blocks == (2, 3)
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    student.install_hooks()
    resumed.student.eval()
    with torch.no_grad():
        assert torch.equal(student.features(x), resumed.student.features(x))


def test_default_run_records_no_blocks(setup, tmp_path):
    trainer = Trainer(_cfg(setup, tmp_path, **{"train.max_steps": 1}))
    assert trainer.student.adapter_blocks == (0, 1, 2, 3)
    trainer.fit()
    config = json.loads((tmp_path / "final" / "adapter_config.json").read_text())
    assert "adapter_blocks" not in config and "blocks" not in config["adapter"] and config["num_adapters"] == 4
    run = json.loads(next((tmp_path / "checkpoints").glob("step_*/config.json")).read_text())
    assert "blocks" not in run["adapter"]
