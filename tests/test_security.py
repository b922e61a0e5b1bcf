"""Hostile files: a pickle that runs code on load, at every place the toolkit loads weights.

The crafted file's ``__reduce__`` asks the unpickler to call ``os.system("touch MARKER")``.
Every loading path must refuse it with a clear one-line error and the marker must never
appear. The first test shows the file is live: plain unpickling does create the marker.
Also here: YAML bombs through the real entry points, and a static check that no module
loads pickles, NumPy object arrays or YAML any other way.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.maa_train.eval.evalkit import tiny_clip, write_labelled_dataset

ROOT = Path(__file__).resolve().parents[1]


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "MARKER"
    yield path
    assert not path.exists(), "a crafted pickle ran code"


def plant(path: Path, marker: Path, torch_format: bool = True) -> Path:
    """A pickle at ``path`` that runs ``touch marker`` when unpickled (torch's zip format or bare)."""
    payload = {"model": {"weight": torch.zeros(2)}, "hook": _RunsCode(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if torch_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    return path


def one_line(text: str) -> str:
    """The one line of an error (progress bars that transformers draws while loading aside)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "Loading weights:" not in ln]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("sec") / "model")


def test_the_crafted_pickle_really_runs_code(tmp_path):
    live = tmp_path / "LIVE"
    pickle.loads(plant(tmp_path / "x.pkl", live, torch_format=False).read_bytes())
    assert live.exists()


@pytest.mark.parametrize("torch_format", [True, False], ids=["torch-zip", "bare-pickle"])
def test_official_import_refuses_a_code_running_pickle(tmp_path, marker, torch_format):
    from maa_train.students.official import OfficialFormatError, convert_official

    evil = plant(tmp_path / "maa.pth", marker, torch_format)
    with pytest.raises(OfficialFormatError, match=r"refused: the pickle calls posix\.system") as err:
        convert_official(evil, tmp_path / "out")
    one_line(str(err.value))
    assert not (tmp_path / "out").exists()


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(folder / "trainable.safetensors"))
    (folder / "config.json").write_text("{}")
    (folder / "DONE").write_text("2")
    return folder


def test_resume_refuses_an_old_pickled_state(tmp_path, marker):
    from maa_train.train import train_state
    from maa_train.train.state_file import StateFormatError

    ckpt = _checkpoint(tmp_path / "step_00000002")
    plant(ckpt / "state.pt", marker)
    with pytest.raises(StateFormatError, match="old pickle format.*not loaded") as err:
        train_state.load(ckpt)
    one_line(str(err.value))


@pytest.mark.parametrize("name", ["trainable.safetensors", "discriminator.safetensors", "state.safetensors"])
def test_resume_refuses_a_pickle_in_place_of_safetensors(tmp_path, marker, name):
    from maa_train.train import train_state
    from maa_train.students.safe_load import WeightFileError
    from maa_train.train.state_file import save_state

    ckpt = _checkpoint(tmp_path / "step_00000002")
    save_state(ckpt, {"step": 2, "rng": {"torch": torch.get_rng_state()}})
    plant(ckpt / name, marker)
    with pytest.raises(WeightFileError, match=f"{name}: not a readable safetensors file.*torch pickle") as err:
        train_state.load(ckpt)
    one_line(str(err.value))


def test_maa_train_resume_cli_exits_2_on_a_pickled_state(model, tmp_path, marker, capsys):
    from maa_train.train.cli import main
    from tests.maa_train.eval.evalkit import train_config

    data = write_labelled_dataset(tmp_path / "data", [6, 6, 6])
    out = tmp_path / "run"
    plant(_checkpoint(out / "checkpoints" / "step_00000002") / "state.pt", marker)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(train_config(model, data, out)))
    assert main(["--config", str(cfg), "--resume"]) == 2
    assert "old pickle format" in one_line(capsys.readouterr().err)


def _adapters(model: Path, folder: Path, marker: Path) -> Path:
    from maa_train.students.adapter_config import AdapterConfig
    from maa_train.students.checkpoint import WEIGHTS_NAME, save_adapters
    from maa_train.encoders.load import load_vision_model
    from maa_train.students.inject import AdaptedEncoder

    enc, _ = load_vision_model(model)
    save_adapters(folder, AdaptedEncoder(enc, AdapterConfig(bottleneck=8, attn_dim=8, heads=2)))
    plant(folder / WEIGHTS_NAME, marker)
    return folder


def test_maa_eval_adapters_cli_exits_2_on_a_pickle(model, tmp_path, marker, capsys):
    from maa_train.eval.cli import main

    adapters = _adapters(model, tmp_path / "adapters", marker)
    data = write_labelled_dataset(tmp_path / "data", [4])
    rc = main(["--model", str(model), "--data", str(data), "--all-shards", "--adapters", f"evil={adapters}",
               "--device", "cpu", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "adapters.safetensors: not a readable safetensors file" in one_line(capsys.readouterr().err)


def test_export_attach_adapters_refuses_a_pickle(model, tmp_path, marker):
    from maa_train.students.export import attach_adapters
    from maa_train.encoders.load import load_vision_model
    from maa_train.students.safe_load import WeightFileError

    adapters = _adapters(model, tmp_path / "adapters", marker)
    with pytest.raises(WeightFileError, match="not a readable safetensors file") as err:
        attach_adapters(load_vision_model(model)[0], adapters)
    one_line(str(err.value))


def test_hf_model_folder_with_a_pickled_bin_runs_nothing(model, tmp_path, marker):
    """`from_pretrained` reads pytorch_model.bin with weights_only=True (transformers' default)."""
    import shutil

    from maa_train.encoders.load import load_vision_model

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(model / "config.json", folder / "config.json")
    plant(folder / "pytorch_model.bin", marker)
    with pytest.raises(Exception):
        load_vision_model(folder)


def test_sam2_checkpoint_is_read_weights_only(tmp_path, marker):
    from corruptor.masks.registry import make_mask_source
    from corruptor.masks.source import MaskSourceConfig, MaskSourceError

    evil = plant(tmp_path / "sam2.pt", marker)
    cfg = MaskSourceConfig(kind="sam2", sam2={"device": "cpu", "image_size": 128, "points_per_side": 4,
                                              "checkpoint": evil})
    with pytest.raises(MaskSourceError, match=r"refused: the pickle calls posix\.system") as err:
        make_mask_source(cfg)
    one_line(str(err.value))


def test_sam2_reader_takes_the_release_layout(tmp_path):
    from corruptor.masks.sam2_checkpoint import Sam2CheckpointError, read_sam2_checkpoint

    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "ok.pt")
    assert torch.equal(read_sam2_checkpoint(tmp_path / "ok.pt")["w"], torch.ones(2))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(Sam2CheckpointError, match="expected a SAM2 checkpoint"):
        read_sam2_checkpoint(tmp_path / "list.pt")


# --- YAML bombs through the real entry points ----------------------------------------------------

BOMB = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, says", [
    (BOMB, "more than 100000 nodes once aliases are expanded"),
    ("[" * 50_000 + "]" * 50_000, "nested deeper than 64 levels"),
    ("x: 1\n" * 300_000, "larger than 1048576 bytes"),
    (b"name: caf\xe9\n", "not UTF-8 text"),
], ids=["alias-bomb", "deep-list", "huge-file", "latin-1"])
def test_bad_yaml_is_one_line_and_exit_2(tmp_path, capsys, text, says):
    from corruptor.cli.main import main as corruptor_main
    from maa_train.train.cli import main as train_main

    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = ["build", "--recipe", str(path), "--source", "p=embedded:photos", "--target", "2",
            "--out", str(tmp_path / "ds")]
    assert corruptor_main(argv) == 2
    assert says in one_line(capsys.readouterr().err)
    assert not (tmp_path / "ds").exists()
    assert train_main(["--config", str(path)]) == 2
    assert says in one_line(capsys.readouterr().err)


def test_set_values_go_through_the_same_limits():
    from maa_train.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"--set data.train: nested deeper than 64 levels"):
        load_config(None, ["data.train=" + "[" * 100 + "]" * 100])
    with pytest.raises(ConfigError, match=r"--set data.train: malformed YAML"):
        load_config(None, ["data.train=[unclosed"])


# --- no other way in -----------------------------------------------------------------------------

_CODE = ("corruptor", "maa_train", "maa_format", "pipelines", "benchmarks")
# The two loaders allowed to call torch.load (each with weights_only=True), the one YAML loader.
_TORCH_LOADERS = {"maa_train/students/safe_load.py", "corruptor/masks/sam2_checkpoint.py"}
_YAML_LOADER = "maa_format/safe_yaml.py"
_UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("dill", "load"), ("dill", "loads"),
               ("joblib", "load"), ("cloudpickle", "load"), ("cloudpickle", "loads"), ("torch", "load")}
_YAML_CALLS = {"load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all", "full_load_all"}


def _calls(tree):
    import ast

    for node in ast.walk(tree):
        func = getattr(node, "func", None)
        if isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            kw = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            yield node.func.value.id, node.func.attr, kw, node.lineno


def test_no_module_unpickles_or_loads_yaml_another_way():
    import ast

    problems = []
    for top in _CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for mod, attr, kw, line in _calls(ast.parse(path.read_text(encoding="utf-8"))):
                where = f"{rel}:{line}: {mod}.{attr}"
                if (mod, attr) == ("torch", "load"):
                    if rel not in _TORCH_LOADERS or kw.get("weights_only") is not True:
                        problems.append(where)
                elif (mod, attr) in _UNPICKLERS:
                    problems.append(where)
                elif mod in ("np", "numpy") and attr == "load" and kw.get("allow_pickle") is not False:
                    problems.append(f"{where} without allow_pickle=False")
                elif mod == "yaml" and attr in _YAML_CALLS and rel != _YAML_LOADER:
                    problems.append(f"{where} (use maa_format.safe_yaml)")
                if kw.get("weights_only") is False or kw.get("allow_pickle") is True:
                    problems.append(f"{where} with a pickle-enabling flag")
    assert not problems, problems
