"""Import of the public release's adapter checkpoint (`maa.pth`).

The release saves a LLaVA state dict filtered to keys containing `.maa_adapter.`, e.g.
`model.vision_tower.vision_tower.vision_model.encoder.layers.3.maa_adapter.mlp.0.weight`,
possibly prefixed `module.`. Its loader also accepts the legacy `.content_adapter.` names and
a state dict wrapped as `{"adapter_state_dict" | "state_dict" | "model": ...}`; so does this
import. Parameter names inside an adapter are ours too, so the import keeps
`layers.{i}.maa_adapter.<name>` and renames the prefix to `adapters.{i}.<name>`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from maa_train.students.adapter import AdapterConfig
from maa_train.students.checkpoint import save_tensors
from maa_train.students.safe_load import WeightFileError, load_torch_pickle
from maa_train.students.inject import adapters_for

_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:maa_adapter|content_adapter)\.(.+)$")
WRAPPERS = ("adapter_state_dict", "state_dict", "model", "module")
EXPECTED = ("a state dict (or one wrapped as {'adapter_state_dict'|'state_dict'|'model': ...}) of "
            "'...layers.<i>.maa_adapter.<name>' (or '.content_adapter.') tensors")
_SCALARS = ("alpha_mlp", "alpha_pool", "window_attn.beta_attn")


class OfficialFormatError(ValueError):
    """The file is not an adapter checkpoint in the release's layout."""


def _state_dict(obj, path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in WRAPPERS:
            if isinstance(obj.get(key), dict):
                return _state_dict(obj[key], path)
    if not isinstance(obj, dict):
        raise OfficialFormatError(f"{path}: expected {EXPECTED}; found a {type(obj).__name__}")
    return obj


def _load(pth_path: Path):
    if not pth_path.is_file():
        raise OfficialFormatError(f"{pth_path}: no such file; expected the release's maa.pth")
    try:  # weights_only=True, never anything else: the file may come from anywhere
        return load_torch_pickle(pth_path)
    except WeightFileError as exc:
        raise OfficialFormatError(f"not a torch tensor checkpoint that loads without running code: {exc} (expected {EXPECTED})") from None


def import_official(pth_path: str | Path, feature_layer: int | None = None) -> dict[str, torch.Tensor]:
    """Tensors of the release's `maa.pth` under our names (`adapters.{i}.<name>`).

    With `feature_layer`, adapters of blocks at or after it are dropped, as the trainer never
    builds them (they cannot change the features the language model reads)."""
    pth_path = Path(pth_path)
    raw = _state_dict(_load(pth_path), pth_path)
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        match = _KEY.search(key)
        if match is None:
            continue
        name = match.group(2)
        if name == "window_attn.relpos_index":  # a derived buffer, rebuilt from the window size
            continue
        if not isinstance(value, torch.Tensor):
            raise OfficialFormatError(f"{pth_path}: {key} holds a {type(value).__name__}, expected a tensor")
        if name.endswith(_SCALARS) and value.numel() == 1:
            value = value.reshape(1)
        out[f"adapters.{int(match.group(1))}.{name}"] = value.float()
    if not out:
        sample = list(raw)[:3]
        raise OfficialFormatError(f"{pth_path}: no key matches 'layers.<i>.maa_adapter.<name>' or "
                                  f"'.content_adapter.' (expected {EXPECTED}; first keys: {sample})")
    layers = sorted({int(k.split(".")[1]) for k in out})
    if layers != list(range(len(layers))):
        raise OfficialFormatError(f"{pth_path}: adapter layers are not contiguous from 0: {layers} (expected one "
                                  "adapter per encoder block, 0..L-1)")
    if feature_layer is not None:
        keep = adapters_for(feature_layer, len(layers))
        out = {k: v for k, v in out.items() if int(k.split(".")[1]) < keep}
    return out


def infer_adapter_config(state: dict[str, torch.Tensor], **overrides) -> tuple[AdapterConfig, int, int]:
    """(AdapterConfig, hidden size, layer count) read off the tensor shapes of adapter 0."""
    def get(name):
        return state.get(f"adapters.0.{name}")

    num_layers = len({k.split(".")[1] for k in state})
    norm, mlp_in, qkv, table = get("norm.weight"), get("mlp.0.weight"), get("window_attn.qkv.weight"), get(
        "window_attn.relpos_table"
    )
    if norm is None and mlp_in is None and qkv is None:
        raise OfficialFormatError("adapter 0 has neither norm, mlp nor window_attn weights")
    hidden = (norm if norm is not None else mlp_in if mlp_in is not None else qkv).shape[-1]
    fields = {"use_mlp": mlp_in is not None, "use_attn": qkv is not None, "use_pool": get("alpha_pool") is not None}
    if mlp_in is not None:
        fields["bottleneck"] = mlp_in.shape[0]
    if qkv is not None:
        side = math.isqrt(table.shape[0])
        fields.update(attn_dim=qkv.shape[0] // 3, heads=table.shape[1], window=(side + 1) // 2)
    fields.update(overrides)
    return AdapterConfig(**fields), hidden, num_layers


def convert_official(pth_path: str | Path, out_dir: str | Path, *, base_model: str = "", feature_layer: int = -2,
                     vision_model_type: str = "clip_vision_model", use_projector: bool = True) -> Path:
    """Save the release's adapters as our checkpoint (safetensors + JSON config).

    `feature_layer` defaults to LLaVA-1.5/1.6's -2, as the trainer's default for a LLaVA model:
    the last block's adapter is dropped (the language model never sees its output)."""
    num_layers = len({k.split(".")[1] for k in import_official(pth_path)})
    state = import_official(pth_path, feature_layer=feature_layer)
    cfg, hidden, _ = infer_adapter_config(state)
    config = {
        "kind": "maa",
        "adapter": cfg.to_dict(),
        "base_model": base_model,
        "hidden_size": hidden,
        "num_layers": num_layers,
        "feature_layer": feature_layer,
        "select_strategy": "default",
        "num_adapters": len({k.split(".")[1] for k in state}),
        "vision_model_type": vision_model_type,
        "use_projector": use_projector,
        "imported_from": str(pth_path),
    }
    return save_tensors(out_dir, state, config)
