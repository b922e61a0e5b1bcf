"""The models an evaluation compares, one table row each: the frozen encoder without
adapters (the base row) and every adapter checkpoint.

Hook-based students (maa, mse_only, bottleneck) share one frozen backbone and take turns
hooking into it; LoRA and full-finetune checkpoints change the backbone itself and get their
own copy. The checkpoints must agree on the feature layer, the projector and the input size
unless the caller chooses them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from maa_train.data.preprocess import ImageSizeError, ProcessorSettings
from maa_train.encoders.load import ModelInfo, load_vision_model
from maa_train.eval.options import AdapterSpec, EvalOptions, EvaluationError
from maa_train.eval.table import BASE_ROW, CLEAN_ROW
from maa_train.students.adapter import AdapterConfig
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import CheckpointMismatchError, load_adapters, read_config
from maa_train.students.inject import AdaptedEncoder

SHARED_BACKBONE_KINDS = ("maa", "mse_only", "bottleneck")


class _PassThrough(nn.Module):
    def forward(self, hidden: torch.Tensor, grid) -> torch.Tensor:
        return hidden


@dataclass
class Model:
    name: str
    student: AdaptedEncoder
    shares_backbone: bool
    record: dict = field(default_factory=dict)

    @contextmanager
    def active(self) -> Iterator[None]:
        """Only one student may hook into a shared backbone at a time."""
        if not self.shares_backbone:
            yield
            return
        self.student.install_hooks()
        try:
            yield
        finally:
            self.student.remove_hooks()


def _agreed(configs: dict[str, dict], key: str, given):
    if given is not None:
        return given
    values = {name: cfg.get(key) for name, cfg in configs.items() if cfg.get(key) is not None}
    if len(set(values.values())) > 1:
        raise EvaluationError(f"the adapter checkpoints disagree on {key}: {values}; choose one explicitly "
                              f"(--{key.replace('_', '-')})")
    return next(iter(values.values()), None)


def _check_encoder(spec: AdapterSpec, saved: dict, info: ModelInfo, model_path) -> None:
    wants = {"width": saved.get("hidden_size"), "blocks": saved.get("num_layers")}
    has = {"width": info.hidden_size, "blocks": info.num_layers}
    if any(v is not None and v != has[k] for k, v in wants.items()):
        raise CheckpointMismatchError(
            f"adapters {spec.name!r} ({spec.path}) were made for an encoder of width {wants['width']} with "
            f"{wants['blocks']} blocks ({saved.get('base_model') or 'unknown model'}); {model_path} has width "
            f"{has['width']} with {has['blocks']} blocks")


def _read_configs(specs: list[AdapterSpec]) -> dict[str, dict]:
    configs = {}
    for spec in specs:
        try:
            configs[spec.name] = read_config(spec.path)
        except FileNotFoundError as exc:
            raise EvaluationError(f"adapters {spec.name!r}: {exc}") from None
    return configs


def input_settings(model_path, specs: list[AdapterSpec], image_size: int | None = None) -> ProcessorSettings:
    """The encoder's processor settings at the input size the adapters were trained at.

    ``image_size`` given: that size. Else the size the checkpoints record (``data.image_size``
    of their training run; they must agree), else the model folder's own.
    """
    size = _agreed(_read_configs(specs), "image_size", image_size)
    try:
        return ProcessorSettings.from_model_dir(model_path, size)
    except ImageSizeError as exc:
        raise EvaluationError(f"--image-size: {exc}") from None


def build_models(model_path, specs: list[AdapterSpec], opts: EvalOptions, device: torch.device):
    """([base row, one row per checkpoint], encoder info, feature layer, use_projector)."""
    names = [s.name for s in specs]
    reserved = {BASE_ROW, CLEAN_ROW}
    if len(set(names)) != len(names) or reserved & set(names):
        raise EvaluationError(f"adapter names must be unique and not {sorted(reserved)}, got {names}")
    configs = _read_configs(specs)
    feature_layer = _agreed(configs, "feature_layer", opts.feature_layer)
    use_projector = _agreed(configs, "use_projector", opts.use_projector)  # None: the model's default

    def backbone():
        model, info = load_vision_model(model_path)
        return model.to(device), info

    shared, info = backbone()
    view = {"feature_layer": feature_layer, "use_projector": use_projector, "info": info}
    base = AdaptedEncoder(shared, adapter_factory=lambda dim: _PassThrough(), **view).eval()
    base.remove_hooks()
    models = [Model(BASE_ROW, base, True)]
    for spec in specs:
        _check_encoder(spec, configs[spec.name], info, model_path)
        models.append(_checkpoint_row(spec, configs[spec.name], shared, backbone, view, device))
    return models, info, base.feature_layer, base.use_projector


def _checkpoint_row(spec: AdapterSpec, saved: dict, shared, backbone, view: dict, device: torch.device) -> Model:
    kind = saved.get("kind", "maa")
    cfg = AdapterConfig.from_dict(saved.get("adapter") or {})
    kwargs = dict(view)
    if kind == "lora":
        lora = saved.get("lora") or {}
        kwargs |= {"rank": lora.get("rank", 16), "lora_alpha": lora.get("lora_alpha", 32),
                   "lora_dropout": lora.get("lora_dropout", 0.0), "lora_targets": lora.get("targets")}
    shares = kind in SHARED_BACKBONE_KINDS
    student = make_student(kind, shared if shares else backbone()[0], cfg, **kwargs).to(device)
    load_adapters(spec.path, student)
    student.eval()
    if shares:
        student.remove_hooks()
    record = {"path": str(spec.path), "kind": kind, "adapter": cfg.to_dict(),
              **{k: saved[k] for k in ("step", "val_l2", "base_model") if k in saved}}
    return Model(spec.name, student, shares, record)
