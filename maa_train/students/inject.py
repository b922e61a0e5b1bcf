"""Adapters inside a frozen Hugging Face vision encoder, one per block (or per block of
``adapter.blocks``), on the block's input."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from typing import Callable, Iterator

import torch
from torch import nn

from maa_train.students.adapter import AdapterConfig, MAAAdapter
from maa_train.encoders.grid import PatchGrid, grid_for
from maa_train.encoders.load import ModelInfo, describe, family_of, find_blocks, find_projector, find_tower


class AdaptedEncoder(nn.Module):
    """A frozen vision encoder with one trainable adapter on the input of each block before the
    feature layer (or of each block in ``adapter_cfg.blocks``).

    The teacher pass uses the same module with `adapters_disabled()` (or
    `features(..., adapters=False)`), so no second copy of the encoder exists.
    """

    kind = "maa"
    adversarial = True  # whether the trainer should use the adversarial term for this student

    def __init__(
        self,
        model: nn.Module,
        adapter_cfg: AdapterConfig | None = None,
        *,
        feature_layer: int | None = None,
        use_projector: bool | None = None,
        adapter_factory: Callable[[int], nn.Module] | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.info = info or describe(model)
        # Plain attributes, not submodules: they live inside `model` already.
        self.__dict__["tower"] = find_tower(model)
        self.__dict__["blocks"] = find_blocks(model)
        self.family = family_of(self.tower)
        self.grid: PatchGrid = grid_for(self.tower.config)
        self.adapter_cfg = adapter_cfg or AdapterConfig()
        self._choose_features(feature_layer, use_projector)
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        self._build_adapters(adapter_factory)
        self._use_last_hidden_state = self.tower is model and self.feature_layer == -1
        self._enabled = True
        self._captured: torch.Tensor | None = None
        self._hooks: list = []
        self.install_hooks()

    def _choose_features(self, feature_layer: int | None, use_projector: bool | None) -> None:
        """The hidden state the features are read from, and whether through the projector."""
        model, num_layers = self.model, len(self.blocks)
        self.feature_layer = self.info.default_feature_layer if feature_layer is None else int(feature_layer)
        if not -(num_layers + 1) <= self.feature_layer <= num_layers:
            raise ValueError(
                f"feature_layer must be in [{-(num_layers + 1)}, {num_layers}] for {num_layers} blocks, "
                f"got {self.feature_layer}"
            )
        self.__dict__["projector"] = find_projector(model) if self.tower is not model else None
        if use_projector and self.projector is None:
            raise ValueError(f"use_projector=True but {type(model).__name__} has no multimodal projector")
        # Default: what the language model reads, i.e. through the projector when there is one.
        self.use_projector = (self.projector is not None) if use_projector is None else bool(use_projector)
        # LLaVA's `default` select strategy drops CLS; `full` keeps it (bare encoders: patch tokens).
        self.keep_prefix = self.info.select_strategy == "full" and self.tower is not model

    def _build_adapters(self, adapter_factory: Callable[[int], nn.Module] | None) -> None:
        num_layers = len(self.blocks)
        # hidden_states[k] as transformers counts them: k < L is block k's input (before its
        # adapter, as in the release), k == L the last block's output.
        self._capture_index = self.feature_layer % (num_layers + 1)
        # Adapters on blocks at or after the captured hidden state never change the features
        # (LLaVA's -2 leaves the last block unused): they are not built. Of the others, those
        # in adapter.blocks (default: all) are; adapter i sits on block adapter_blocks[i].
        if adapters_for(self.feature_layer, num_layers) == 0:
            raise ValueError(f"feature_layer {self.feature_layer} is the embedding output (hidden state 0): "
                             "no block adapter can change it; choose a layer in 1..L or -1..-L")
        blocks = adapter_blocks(self.feature_layer, num_layers, self.adapter_cfg.blocks)
        factory = adapter_factory if adapter_factory is not None else partial(MAAAdapter, cfg=self.adapter_cfg)
        self.adapters = nn.ModuleList(self._make_adapters(factory, len(blocks)))
        # Students whose trained part is not block adapters (LoRA, full) build none.
        self.adapter_blocks: tuple[int, ...] = blocks if len(self.adapters) else ()
        self.num_adapters = len(self.adapter_blocks)
        slot = {block: i for i, block in enumerate(self.adapter_blocks)}
        self._slots: tuple[int | None, ...] = tuple(slot.get(b) for b in range(num_layers))
        ref = next(self.model.parameters())
        self.adapters.to(device=ref.device)
        if not self.adapter_cfg.fp32:
            self.adapters.to(dtype=ref.dtype)

    def _make_adapters(self, factory: Callable[[int], nn.Module], num_layers: int) -> list[nn.Module]:
        return [factory(self.tower.config.hidden_size) for _ in range(num_layers)]

    # -- hooks -------------------------------------------------------------------------------
    def _pre_hook(self, index: int, module: nn.Module, args: tuple, kwargs: dict):
        in_kwargs = len(args) == 0  # `not args` on a tuple is a graph break under torch.compile
        hidden = kwargs["hidden_states"] if in_kwargs else args[0]
        if index == self._capture_index:
            self._captured = hidden
        slot = self._slots[index]  # a constant per hook: no graph break under torch.compile
        if not self._enabled or slot is None:
            return None
        adapted = self.adapters[slot](hidden, self.grid)
        if in_kwargs:
            return args, {**kwargs, "hidden_states": adapted}
        return (adapted, *args[1:]), kwargs

    def _last_block_hook(self, module: nn.Module, args: tuple, output):
        if self._capture_index == len(self.blocks):
            self._captured = output[0] if isinstance(output, tuple) else output

    def install_hooks(self) -> None:
        """Attach to the backbone's blocks (done on construction; idempotent)."""
        if self._hooks:
            return
        self._hooks = [
            block.register_forward_pre_hook(partial(self._pre_hook, i), with_kwargs=True)
            for i, block in enumerate(self.blocks)
        ]
        self._hooks.append(self.blocks[-1].register_forward_hook(self._last_block_hook))

    def remove_hooks(self) -> None:
        """Detach from the backbone (the adapters stay in this module), e.g. to put another
        student on the same backbone."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # -- public API --------------------------------------------------------------------------
    @contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        previous, self._enabled = self._enabled, False
        try:
            yield
        finally:
            self._enabled = previous

    @property
    def feature_dim(self) -> int:
        if self.use_projector:
            return self.info.projector_dim
        return self.info.hidden_size

    def features(self, pixel_values: torch.Tensor, *, adapters: bool = True, prefix: bool = False) -> torch.Tensor:
        """Patch tokens [B, P, D] of `feature_layer` (prefix removed), optionally projected.
        With ``prefix=True`` the prefix tokens stay in front: [B, grid.prefix + P, D].

        AnyRes input [B, crops, 3, H, W] is flattened to B*crops images of the base size."""
        hidden = self.tokens(pixel_values, adapters=adapters)
        patches = hidden if (prefix or self.keep_prefix) else hidden[:, self.grid.prefix :]
        if self.use_projector:
            patches = self.projector(patches)
        return patches

    def tokens(self, pixel_values: torch.Tensor, *, adapters: bool = True) -> torch.Tensor:
        """Every token [B, prefix + P, D] of `feature_layer` (CLS or other prefix tokens first,
        then the patch grid), never projected: what a probe on the CLS token reads."""
        if pixel_values.dim() == 5:
            pixel_values = pixel_values.flatten(0, 1)
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be [B, 3, H, W] or [B, crops, 3, H, W], got {tuple(pixel_values.shape)}")
        if not self.family.fixed_size:  # DINOv2 interpolates: the grid follows the input
            grid = grid_for(self.tower.config, image_size=tuple(pixel_values.shape[-2:]))
            if grid != self.grid:
                self.grid = grid
        previous, self._enabled = self._enabled, self._enabled and adapters
        self._captured = None
        try:
            out = self.tower(pixel_values=pixel_values)
            hidden = out.last_hidden_state if self._use_last_hidden_state else self._captured
        finally:
            self._enabled = previous
            self._captured = None
        self.grid.check(hidden.shape[1])
        return hidden

    forward = features

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.adapters.parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"adapters.{k}": v for k, v in self.adapters.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        prefix = "adapters."
        self.adapters.load_state_dict({k[len(prefix) :]: v for k, v in state.items()}, strict=True)

    def train(self, mode: bool = True) -> "AdaptedEncoder":
        super().train(mode)
        self.model.eval()  # the backbone is frozen: no dropout, no statistics updates
        return self

    @property
    def config(self) -> dict:
        """What a checkpoint records to rebuild and check this student."""
        return {
            "kind": self.kind,
            "adapter": self.adapter_cfg.to_dict(),
            "base_model": self.info.name_or_path,
            "model_type": self.info.model_type,
            "architecture": self.info.architecture,
            "vision_model_type": self.info.vision_model_type,
            "hidden_size": self.info.hidden_size,
            "num_layers": self.info.num_layers,
            "feature_layer": self.feature_layer,
            "select_strategy": self.info.select_strategy,
            "num_adapters": len(self.adapters),
            "use_projector": self.use_projector,
            "grid": asdict(self.grid),
            # Which block each adapter sits on; recorded only for a chosen subset (the default,
            # range(num_adapters), keeps the checkpoint's bytes as before).
            **({"adapter_blocks": list(self.adapter_blocks)} if self.adapter_cfg.blocks is not None else {}),
        }


def adapters_for(feature_layer: int, num_layers: int) -> int:
    """How many leading blocks carry an adapter that can change hidden state ``feature_layer``."""
    return min(feature_layer % (num_layers + 1), num_layers)


def adapter_blocks(feature_layer: int, num_layers: int, blocks: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The blocks (ascending, non-negative) that carry an adapter: every block that can change
    hidden state ``feature_layer`` (``adapters_for``), or those of ``blocks`` (adapter.blocks,
    negative from the end), each of which must be one of them."""
    usable = adapters_for(feature_layer, num_layers)
    if blocks is None:
        return tuple(range(usable))
    value = list(blocks)
    outside = [b for b in value if not -num_layers <= b < num_layers]
    if outside:
        raise ValueError(f"adapter.blocks {value}: {outside} out of range for a model of depth {num_layers} "
                         f"(blocks 0..{num_layers - 1} or {-num_layers}..-1)")
    resolved = [b % num_layers for b in value]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"adapter.blocks {value} names a block twice ({sorted(resolved)}) for a model of "
                         f"depth {num_layers}")
    late = sorted(b for b in resolved if b >= usable)
    if late:
        raise ValueError(f"adapter.blocks {value}: block(s) {late} at or after feature layer {feature_layer} "
                         f"of a model of depth {num_layers} cannot change the features (blocks 0..{usable - 1} can)")
    return tuple(sorted(resolved))


__all__ = ["AdaptedEncoder", "adapter_blocks", "adapters_for"]
