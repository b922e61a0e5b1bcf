"""Students for the paper's comparisons, all with the AdaptedEncoder interface
(features, adapters_disabled, trainable_parameters, trainable_state_dict, grid, config).

    maa         MAA adapters (the method)
    mse_only    MAA adapters trained without the adversarial term (student.adversarial = False)
    bottleneck  plain bottleneck MLP adapters on each block's input, no attention or pooling
    lora        LoRA (peft) on the encoder's attention projections q/k/v/out
    full        the whole vision encoder unfrozen; the teacher is a frozen copy, the one
                student that needs a second copy of the encoder by its nature
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from maa_train.students.adapter import AdapterConfig
from maa_train.encoders.grid import PatchGrid
from maa_train.students.inject import AdaptedEncoder
from maa_train.encoders.load import family_of, find_tower

STUDENT_KINDS = ("maa", "mse_only", "bottleneck", "lora", "full")


class BottleneckAdapter(nn.Module):
    """x + Linear(b, d)(GELU(Linear(d, b)(LayerNorm(x)))), up-projection zero-initialised so
    the encoder starts unchanged."""

    def __init__(self, dim: int, bottleneck: int = 256) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, bottleneck), nn.GELU(), nn.Linear(bottleneck, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, hidden: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        x = hidden.float()
        return (x + self.mlp(self.norm(x)).float()).to(hidden.dtype)


class MSEOnlyEncoder(AdaptedEncoder):
    kind = "mse_only"
    adversarial = False


class BottleneckEncoder(AdaptedEncoder):
    kind = "bottleneck"

    def __init__(self, model: nn.Module, adapter_cfg: AdapterConfig | None = None, **kwargs) -> None:
        cfg = adapter_cfg or AdapterConfig()
        super().__init__(model, cfg, adapter_factory=lambda dim: BottleneckAdapter(dim, cfg.bottleneck), **kwargs)


class LoraEncoder(AdaptedEncoder):
    kind = "lora"

    def __init__(self, model: nn.Module, adapter_cfg: AdapterConfig | None = None, *, rank: int = 16,
                 lora_alpha: float = 32, lora_dropout: float = 0.0, lora_targets: str | None = None,
                 **kwargs) -> None:
        super().__init__(model, adapter_cfg, **kwargs)
        from peft import LoraConfig, inject_adapter_in_model

        # Injected into the vision tower only: a LLaVA language model has q_proj/k_proj too.
        tower = find_tower(model)
        targets = lora_targets or family_of(tower).lora_targets
        self.lora = {"rank": rank, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "targets": targets}
        try:
            inject_adapter_in_model(
                LoraConfig(r=rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets), tower)
        except ValueError as exc:
            if "not found" not in str(exc):
                raise
        self._lora_layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "_disable_adapters")]
        if not self._lora_layers:
            raise ValueError(f"{type(model).__name__}: lora.targets {targets!r} matches no module of the vision tower "
                             f"(the default for this family is {family_of(tower).lora_targets!r})")

    def _make_adapters(self, factory, num_layers):
        return []

    @contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        # Flip peft's flag directly: its enable_adapters() also rewrites requires_grad.
        previous = [layer._disable_adapters for layer in self._lora_layers]
        for layer in self._lora_layers:
            layer._disable_adapters = True
        try:
            with super().adapters_disabled():
                yield
        finally:
            for layer, flag in zip(self._lora_layers, previous):
                layer._disable_adapters = flag

    def features(self, pixel_values: torch.Tensor, *, adapters: bool = True, prefix: bool = False) -> torch.Tensor:
        if adapters:
            return super().features(pixel_values, prefix=prefix)
        with self.adapters_disabled():
            return super().features(pixel_values, prefix=prefix)

    def _named_trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if "lora_" in n}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self._named_trainable().values())

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"model.{n}": p.detach() for n, p in self._named_trainable().items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = self._named_trainable()
        with torch.no_grad():
            for key, value in state.items():
                params[key[len("model."):]].copy_(value)

    @property
    def config(self) -> dict:
        return {**super().config, "lora": self.lora}


class FullFinetuneEncoder(AdaptedEncoder):
    kind = "full"

    def __init__(self, model: nn.Module, adapter_cfg: AdapterConfig | None = None, **kwargs) -> None:
        super().__init__(model, adapter_cfg, **kwargs)
        # The blocks carry our hooks, and a deep copy would copy what they reference (this
        # whole student): copy them bare.
        self.remove_hooks()
        self.teacher_blocks = copy.deepcopy(self.blocks).requires_grad_(False)
        self.install_hooks()
        for p in self.blocks.parameters():
            p.requires_grad_(True)

    def _make_adapters(self, factory, num_layers):
        return []

    @contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        # Swap the frozen copy's weights in for the teacher pass (run it under no_grad).
        trained = {n: p for n, p in self.blocks.named_parameters()}
        frozen = dict(self.teacher_blocks.named_parameters())
        saved = {n: p.data for n, p in trained.items()}
        for n, p in trained.items():
            p.data = frozen[n].data
        try:
            yield
        finally:
            for n, p in trained.items():
                p.data = saved[n]

    def features(self, pixel_values: torch.Tensor, *, adapters: bool = True, prefix: bool = False) -> torch.Tensor:
        if adapters:
            return super().features(pixel_values, prefix=prefix)
        # no_grad: a graph recorded on the swapped-in weights would be wrong once they swap back.
        with torch.no_grad(), self.adapters_disabled():
            return super().features(pixel_values, prefix=prefix)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.blocks.parameters())

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"blocks.{n}": p.detach() for n, p in self.blocks.named_parameters()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.blocks.load_state_dict({k[len("blocks."):]: v for k, v in state.items()}, strict=True)

    def train(self, mode: bool = True) -> "FullFinetuneEncoder":
        nn.Module.train(self, mode)
        self.model.eval()  # dropout stays off so student and teacher see the same function at init
        return self


_STUDENTS: dict[str, type[AdaptedEncoder]] = {
    "maa": AdaptedEncoder,
    "mse_only": MSEOnlyEncoder,
    "bottleneck": BottleneckEncoder,
    "lora": LoraEncoder,
    "full": FullFinetuneEncoder,
}


def make_student(kind: str, model: nn.Module, adapter_cfg: AdapterConfig | None = None, **kwargs) -> AdaptedEncoder:
    """kwargs go to the student: feature_layer, use_projector, info, and for lora rank/lora_alpha/lora_dropout."""
    if kind not in _STUDENTS:
        raise ValueError(f"student kind {kind!r} is not known; allowed: {list(STUDENT_KINDS)}")
    return _STUDENTS[kind](model, adapter_cfg, **kwargs)
