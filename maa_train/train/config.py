"""Typed training configuration: YAML file + ``--set a.b=value`` overrides, validated once.

Defaults are the paper's settings (AdamW, adapters 5e-5, discriminator 1e-6, no weight
decay, cosine with 5% warm-up, batch 32, clip 1.0, bf16, lambda 0.1, 5% held out).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from maa_format.errors import describe_validation_error
from maa_format.safe_yaml import YamlLoadError, load_file, loads
from maa_train.students.adapter_config import AdapterConfig


class ConfigError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    path: str = Field(description="local folder of a HF model (CLIP, SigLIP, LLaVA, LLaVA-NeXT)")
    # None: the model's own choice, as the release trains. LLaVA-1.5/1.6 read hidden state -2
    # (config.vision_feature_layer) through the projector; a bare encoder: -1, no projector.
    feature_layer: int | None = Field(None, description="hidden state the features come from; None: the model's")
    use_projector: bool | None = Field(None, description="distil after the multimodal projector; None: yes for a VLM")


class LoraSettings(_Strict):
    """The `lora` student's settings (peft LoraConfig on the tower's attention projections)."""
    rank: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # A regex of module names under the vision tower; None: the encoder family's q/k/v/out.
    targets: str | None = None

    @field_validator("targets")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if not value.strip():
                raise ValueError("empty; leave unset for the encoder family's attention projections")
        return value


class DiscriminatorSettings(_Strict):
    width: int | Literal["auto"] = Field(2048, description="hidden width; 'auto' = 2 x the feature width")
    blocks: int = Field(5, ge=0)
    spectral_norm: bool = False
    loss: Literal["bce", "hinge", "lsgan"] = "bce"
    r1_weight: float = Field(0.0, ge=0)
    r1_interval: int = Field(16, gt=0)
    tokens: Literal["patch", "cls", "all"] = Field(
        "patch", description="what it sees: patch tokens (as distillation), the first prefix token, or both")
    warmup_steps: int = Field(0, ge=0, description="first steps train only the discriminator; adapters frozen")
    betas: tuple[float, float] = Field((0.9, 0.999), description="its AdamW betas (the adapters keep the default)")
    # Diagnostics: one warning when accuracy on both sides stays in the chance band, or on
    # fakes at >= collapse_accuracy, for this many steps (0: never warn).
    warn_after_steps: int = Field(200, ge=0)
    chance_band: tuple[float, float] = (0.45, 0.55)
    collapse_accuracy: float = Field(0.99, gt=0.5, le=1)

    @field_validator("width")
    @classmethod
    def _width_positive(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be a positive integer or 'auto'")
        return value

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in value):
            raise ValueError("each beta must be in [0, 1)")
        return value

    @field_validator("chance_band")
    @classmethod
    def _band_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= 0.5 <= value[1] <= 1:
            raise ValueError("must be [low, high] with 0 <= low <= 0.5 <= high <= 1")
        return value


class LossSettings(_Strict):
    adv_weight: float = Field(0.1, ge=0, description="lambda; 0 gives the MSE-only baseline")
    adv_warmup_steps: int = Field(0, ge=0, description="steps of the linear ramp of lambda from 0")
    adv_ramp_start: int | None = Field(
        None, ge=0, description="step where the ramp begins (lambda is 0 before); default: the end of "
                                "discriminator.warmup_steps")
    cosine_weight: float = Field(0.0, ge=0)
    grad_norms: bool = Field(True, description="on log steps, measure each term's gradient norm at the adapters "
                                               "(one extra backward pass per log step)")


class OptimSettings(_Strict):
    adapter_lr: float = Field(5e-5, gt=0)
    disc_lr: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_frac: float = Field(0.05, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    grad_accum: int = Field(1, gt=0)


class DataSettings(_Strict):
    train: list[str] = Field(min_length=1, description="dataset folders, shard globs or URL lists")
    weights: list[float] | None = None
    val: list[str] | None = Field(None, description="held-out data; default: hold out val_fraction of shards")
    val_fraction: float = Field(0.05, gt=0, lt=1)
    val_max_samples: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0, description="per rank (per GPU); ignored when global_batch_size is set")
    # The paper's batch is global: per-GPU batch and gradient accumulation are derived from it
    # and the world size (see resolve_batch).
    global_batch_size: int | None = Field(None, gt=0, description="images per optimiser step over all ranks")
    image_size: int | None = Field(None, gt=0, description="input side in pixels; None: the model's image "
                                                        "processor (DINOv2/ViT folders: any multiple of the patch)")
    workers: int = Field(4, ge=0)
    shuffle_buffer: int = Field(256, gt=0)
    on_error: Literal["skip", "raise"] = "skip"
    steps_per_epoch: int | None = Field(None, gt=0)

    @field_validator("train", "val", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # `--set data.train=/data/x` means one dataset

    @model_validator(mode="after")
    def _weights_match(self) -> "DataSettings":
        if self.weights is not None and len(self.weights) != len(self.train):
            raise ValueError(f"data.weights has {len(self.weights)} entries for {len(self.train)} data.train entries")
        return self


class TrainSettings(_Strict):
    student: Literal["maa", "mse_only", "bottleneck", "lora", "full"] = "maa"
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    seed: int = 0
    precision: Literal["bf16", "fp32"] = "bf16"
    compile: bool = False
    device: Literal["auto", "cuda", "cpu"] = "auto"
    deterministic: bool = False
    log_every: int = Field(10, gt=0)
    val_every: int = Field(500, gt=0)
    val_at_start: bool = Field(False, description="also validate before the first step (the frozen encoder's L2)")
    ckpt_every: int = Field(500, gt=0)
    keep_last: int = Field(3, gt=0)
    out_dir: str = "runs/maa"
    resume: bool = False
    overwrite: bool = Field(False, description="delete a previous run's artefacts in out_dir instead of refusing")
    progress: bool = True


class TrainConfig(_Strict):
    model: ModelConfig
    adapter: AdapterConfig = AdapterConfig()
    lora: LoraSettings = LoraSettings()
    discriminator: DiscriminatorSettings = DiscriminatorSettings()
    loss: LossSettings = LossSettings()
    optim: OptimSettings = OptimSettings()
    data: DataSettings
    train: TrainSettings = TrainSettings()
    # Settings of objectives beyond distill/adv/r1 (whose settings are `loss` and
    # `discriminator`): objectives.<name> is read and validated by that objective's builder.
    objectives: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _discriminator_settings_need_one(self) -> "TrainConfig":
        # Settings of a discriminator that will not exist would be silently ignored: refuse them.
        d = self.discriminator
        if self.train.student == "mse_only" or self.loss.adv_weight == 0:
            why = "train.student=mse_only" if self.train.student == "mse_only" else "loss.adv_weight=0"
            for name, value in (("r1_weight", d.r1_weight), ("warmup_steps", d.warmup_steps)):
                if value:
                    raise ValueError(f"discriminator.{name}={value} but {why} trains no discriminator; "
                                     f"set discriminator.{name}=0")
        if self.adapter.blocks is not None and self.train.student in ("lora", "full"):
            raise ValueError(f"adapter.blocks={list(self.adapter.blocks)} but train.student={self.train.student} "
                             "trains no block adapters; leave adapter.blocks unset")
        if self.train.max_steps is not None and d.warmup_steps >= self.train.max_steps:
            raise ValueError(f"discriminator.warmup_steps={d.warmup_steps} leaves no adapter step of "
                             f"train.max_steps={self.train.max_steps}")
        return self


def student_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Settings only one student kind reads (LoRA's), as make_student keyword arguments."""
    if cfg.train.student != "lora":
        return {}
    lora = cfg.lora
    return {"rank": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "lora_targets": lora.targets}


def _set(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{k}' is not a section")
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> TrainConfig:
    """YAML (or a dict) plus ``key=value`` overrides (values parsed as YAML) -> TrainConfig."""
    tree: dict = copy.deepcopy(base) if base else {}  # overrides must not reach into the caller's dict
    if path is not None:
        try:
            loaded = load_file(Path(path))  # bounded: size, alias expansion, depth, UTF-8
        except YamlLoadError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the config as UTF-8") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        tree.update(loaded)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        try:
            value = loads(raw, f"--set {key.strip()}")
        except YamlLoadError as exc:
            raise ConfigError(str(exc)) from None
        _set(tree, key.strip(), value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, f"invalid config{f' {path}' if path else ''}")) from None
