"""Typed training configuration: YAML file + ``--set a.b=value`` overrides, validated once.

Defaults are the paper's settings (AdamW, adapters 5e-5, discriminator 1e-6, no weight
decay, cosine with 5% warm-up, batch 32, clip 1.0, bf16, lambda 0.1, 5% held out).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    width: int = Field(2048, gt=0)
    blocks: int = Field(5, ge=0)
    spectral_norm: bool = False
    loss: Literal["bce", "hinge", "lsgan"] = "bce"
    r1_weight: float = Field(0.0, ge=0)
    r1_interval: int = Field(16, gt=0)


class LossSettings(_Strict):
    adv_weight: float = Field(0.1, ge=0, description="lambda; 0 gives the MSE-only baseline")
    adv_warmup_steps: int = Field(0, ge=0)
    cosine_weight: float = Field(0.0, ge=0)


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


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{where}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "missing" and
                                          not isinstance(err.get("input"), dict) else ""))
    return "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> TrainConfig:
    """YAML (or a dict) plus ``key=value`` overrides (values parsed as YAML) -> TrainConfig."""
    tree: dict = dict(base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
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
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", "") or exc).split())
            raise ConfigError(f"--set {key.strip()}: value {raw!r} is not valid YAML ({problem}); quote it or close "
                              "its brackets") from None
        _set(tree, key.strip(), value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"invalid config{f' {path}' if path else ''}: {_describe(exc)}") from None
