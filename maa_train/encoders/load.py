"""Loading a checkpoint folder with the real ``from_pretrained``, and finding its parts
(tower, blocks, projector) through its encoder family."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from maa_train.encoders.family import EncoderFamily, UnknownFamilyError, family_for_checkpoint, family_for_type


class BlocksNotFoundError(ValueError):
    """The encoder blocks of a model could not be located."""


@dataclass(frozen=True)
class ModelInfo:
    name_or_path: str
    model_type: str  # config.json's model_type of the loaded checkpoint
    architecture: str  # the transformers class that was loaded
    vision_model_type: str
    hidden_size: int
    num_layers: int
    default_feature_layer: int
    projector_dim: int | None  # output width of the multimodal projector, if any
    # LLaVA's vision_feature_select_strategy: 'default' drops CLS, 'full' keeps it; bare
    # encoders: 'default' (patch tokens only).
    select_strategy: str = "default"

    def to_dict(self) -> dict:
        return asdict(self)


def _get_path(obj, path: tuple[str, ...]):
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _first_module(obj, paths):
    for path in paths:
        found = _get_path(obj, path)
        if isinstance(found, nn.Module):
            return found
    return None


def family_of(model: nn.Module) -> EncoderFamily:
    return family_for_type(getattr(model.config, "model_type", None))


def find_tower(model: nn.Module) -> nn.Module:
    return _first_module(model, family_of(model).tower_paths) or model


def find_projector(model: nn.Module) -> nn.Module | None:
    return _first_module(model, family_of(model).projector_paths)


def find_blocks(model: nn.Module) -> nn.ModuleList:
    tower = find_tower(model)
    try:
        paths = family_of(tower).block_paths
    except UnknownFamilyError as exc:
        raise BlocksNotFoundError(f"{type(model).__name__}: {exc}") from None
    for path in paths:
        blocks = _get_path(tower, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks
    looked = ", ".join(".".join(p) for p in paths)
    raise BlocksNotFoundError(
        f"{type(model).__name__}: cannot find the vision encoder blocks (looked for a non-empty ModuleList at "
        f"{looked} under the vision tower {type(tower).__name__})"
    )


def read_family(path: Path) -> EncoderFamily:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: expected a save_pretrained folder")
    model_type = json.loads(config_file.read_text()).get("model_type")
    try:
        return family_for_checkpoint(model_type)
    except UnknownFamilyError as exc:
        raise ValueError(f"{config_file}: {exc}") from None


def load_vision_model(
    path: str | Path, *, dtype: torch.dtype | str | None = None, keep_language_model: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """Load a checkpoint folder with the real `from_pretrained` and describe its vision side.

    For VLM families, unless `keep_language_model`, the language model is built with no
    decoder layers, so its weights are never read (a 7B LLaVA loads in about the memory of
    its vision tower, projector and embeddings), and the rest of it is dropped after loading:
    training only needs the tower and the projector.
    """
    import transformers

    path = Path(path)
    family = read_family(path)
    cls = getattr(transformers, family.model_class)
    kwargs = {} if dtype is None else {"dtype": dtype}
    vision_only = family.multimodal and not keep_language_model
    if vision_only:
        config = transformers.AutoConfig.from_pretrained(str(path))
        config.text_config.num_hidden_layers = 0
        kwargs["config"] = config
        # The language model's layer weights are reported as unused, by design: keep it quiet.
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            model = cls.from_pretrained(str(path), **kwargs)
        finally:
            transformers.logging.set_verbosity(verbosity)
    else:
        model = cls.from_pretrained(str(path), **kwargs)
    if vision_only:
        inner = getattr(model, "model", model)
        if hasattr(inner, "language_model"):
            inner.language_model = None
        if hasattr(model, "lm_head"):
            model.lm_head = None
    return model, describe(model, name_or_path=str(path))


def describe(model: nn.Module, name_or_path: str | None = None) -> ModelInfo:
    tower = find_tower(model)
    vision_config = tower.config
    blocks = find_blocks(model)
    is_multimodal = tower is not model
    feature_layer = getattr(model.config, "vision_feature_layer", -1) if is_multimodal else -1
    if not isinstance(feature_layer, int):
        raise ValueError(
            f"{type(model).__name__}: vision_feature_layer {feature_layer!r} selects several layers; "
            "only a single int layer is supported"
        )
    strategy = getattr(model.config, "vision_feature_select_strategy", "default") if is_multimodal else "default"
    if strategy not in ("default", "full"):
        raise ValueError(f"{type(model).__name__}: vision_feature_select_strategy {strategy!r} is not supported; "
                         "allowed: 'default' (drop CLS), 'full'")
    projector = find_projector(model) if is_multimodal else None
    projector_dim = None
    if projector is not None:
        last_linear = [m for m in projector.modules() if isinstance(m, nn.Linear)]
        projector_dim = last_linear[-1].out_features if last_linear else None
    return ModelInfo(
        name_or_path=name_or_path or getattr(model.config, "_name_or_path", "") or "",
        model_type=model.config.model_type,
        architecture=type(model).__name__,
        vision_model_type=vision_config.model_type,
        hidden_size=vision_config.hidden_size,
        num_layers=len(blocks),
        default_feature_layer=feature_layer,
        projector_dim=projector_dim,
        select_strategy=strategy,
    )
