"""Adapter checkpoints: `adapters.safetensors` (trainable tensors) + `adapter_config.json`."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

from maa_train.students.safe_load import WeightFileError, load_safetensors

from maa_format.io import atomic_write

WEIGHTS_NAME = "adapters.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT_VERSION = 1
PRECISION_FIELDS = ("fp32", "full_fp32")  # how adapters compute, not what they are: may differ on load


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def package_version() -> str:
    try:
        return metadata.version("maa-toolkit")
    except metadata.PackageNotFoundError:
        return "unknown"


def save_tensors(directory: str | Path, tensors: dict[str, torch.Tensor], config: dict, extra: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"format_version": FORMAT_VERSION, "package_version": package_version(), **config, **(extra or {})}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    # Config last: its presence means the weights next to it are complete.
    atomic_write(directory / CONFIG_NAME, json.dumps(record, indent=2, sort_keys=True))
    return directory


def save_adapters(directory: str | Path, adapted, extra: dict | None = None) -> Path:
    """Write the student's trainable tensors and its config (adapter settings, base model,
    model type, hidden size, layer count, feature layer, package version). `extra` adds
    JSON-serialisable fields (step, metrics)."""
    return save_tensors(directory, adapted.trainable_state_dict(), adapted.config, extra)


class CheckpointFormatError(WeightFileError):
    """A file or folder that is not an adapter checkpoint of this toolkit (a weight-file error too)."""


EXPECTED_LAYOUT = f"an adapter checkpoint folder ({WEIGHTS_NAME} + {CONFIG_NAME})"


def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    if directory.is_file():
        raise CheckpointFormatError(
            f"{directory} is a file; expected {EXPECTED_LAYOUT} (a release maa.pth is imported with "
            "maa-import-official first)")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not {EXPECTED_LAYOUT}")
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointFormatError(f"{path}: not valid JSON ({exc}); expected {EXPECTED_LAYOUT}") from None
    if not isinstance(config, dict):
        raise CheckpointFormatError(f"{path}: expected a JSON object, found {type(config).__name__}")
    return config


def read_tensors(directory: str | Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not {EXPECTED_LAYOUT}")
    try:
        return load_safetensors(path, "adapter weights")
    except WeightFileError as exc:
        raise CheckpointFormatError(str(exc)) from None


# What must match for adapters to mean the same thing on another model: the encoder (type,
# width, depth, patch grid) and the features they were trained for (which hidden state, with
# or without CLS, through the projector or not). Fields a checkpoint lacks (older ones, the
# release's import) are not checked.
COMPATIBILITY_FIELDS = ("kind", "model_type", "vision_model_type", "hidden_size", "num_layers", "grid",
                        "feature_layer", "select_strategy", "use_projector")


def _plain(value):
    return json.loads(json.dumps(value, default=str))  # tuples and lists compare alike


def adapter_blocks_of(config: dict) -> list[int] | None:
    """The blocks a student's (or checkpoint's) adapters sit on: `adapter_blocks` when recorded
    (a chosen `adapter.blocks`), else the first `num_adapters` blocks (the default); None when
    the config says neither (older checkpoints, the release's import without a count)."""
    if "adapter_blocks" in config:
        return [int(b) for b in config["adapter_blocks"]]
    if "num_adapters" in config:
        return list(range(int(config["num_adapters"])))
    return None


def blocks_difference(saved: dict, current: dict) -> str | None:
    """`adapter.blocks: ...` naming both sides when the adapters sit on other blocks, else None.
    Compared resolved ([-2, -1] and [10, 11] are the same blocks of a 12-block model)."""
    old, new = adapter_blocks_of(saved), adapter_blocks_of(current)
    if old is None or new is None or old == new:
        return None
    show = lambda cfg, blocks: (f"{blocks} (adapter.blocks {(cfg.get('adapter') or {}).get('blocks')})"
                                if "adapter_blocks" in cfg else f"{blocks} (adapter.blocks null)")
    return f"adapter.blocks: checkpoint has adapters on blocks {show(saved, old)}, model on {show(current, new)}"


# Adapter settings compared by `blocks_difference` (resolved) rather than as written.
RESOLVED_FIELDS = ("blocks",)


def _grid_is_fixed(config: dict) -> bool:
    """Whether the encoder's patch grid is part of what adapters fit: not for a family whose
    position embeddings interpolate (DINOv2), where the grid follows the input size (recorded as
    ``image_size``) and the adapters' weights do not depend on it."""
    from maa_train.encoders.family import UnknownFamilyError, family_for_type

    try:
        return family_for_type(config.get("vision_model_type") or config.get("model_type")).fixed_size
    except UnknownFamilyError:
        return True


def check_compatible(saved: dict, current: dict, saved_tensors: dict, current_tensors: dict) -> None:
    problems = []
    fields = COMPATIBILITY_FIELDS if _grid_is_fixed(current) else tuple(f for f in COMPATIBILITY_FIELDS if f != "grid")
    for field in fields:
        if field in saved and field in current and _plain(saved[field]) != _plain(current[field]):
            problems.append(f"{field}: checkpoint has {saved[field]!r}, model has {current.get(field)!r}")
    blocks = blocks_difference(saved, current)
    if blocks:
        problems.append(blocks)
    saved_adapter, current_adapter = saved.get("adapter") or {}, current.get("adapter") or {}
    diff = {
        k: (v, current_adapter.get(k))
        for k, v in saved_adapter.items()
        if k not in PRECISION_FIELDS + RESOLVED_FIELDS and _plain(current_adapter.get(k)) != _plain(v)
    }
    if diff:
        problems.append(f"adapter settings (checkpoint, model): {diff}")
    missing = sorted(set(current_tensors) - set(saved_tensors))
    unexpected = sorted(set(saved_tensors) - set(current_tensors))
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    shapes = [
        f"{k}: checkpoint {tuple(saved_tensors[k].shape)}, model {tuple(current_tensors[k].shape)}"
        for k in sorted(set(saved_tensors) & set(current_tensors))
        if saved_tensors[k].shape != current_tensors[k].shape
    ]
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {shapes[:8]}{' ...' if len(shapes) > 8 else ''}")
    if problems:
        raise CheckpointMismatchError("checkpoint does not fit this model: " + "; ".join(problems))


def load_adapters(directory: str | Path, adapted) -> dict:
    """Load a checkpoint into `adapted` after checking names and shapes; returns its config."""
    directory = Path(directory)
    saved = read_config(directory)
    tensors = read_tensors(directory)
    current = adapted.trainable_state_dict()
    check_compatible(saved, adapted.config, tensors, current)
    adapted.load_trainable_state_dict(tensors)
    return saved
