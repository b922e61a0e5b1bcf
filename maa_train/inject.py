"""Adapters inside a frozen Hugging Face vision encoder, one per block, on the block's input."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from maa_train.adapter import AdapterConfig, MAAAdapter
from maa_train.grid import PREFIX_TOKENS, PatchGrid, grid_for


class BlocksNotFoundError(ValueError):
    """The encoder blocks of a model could not be located."""


# config.json model_type -> transformers class name. "clip"/"siglip" are dual-encoder
# checkpoints from which only the vision half is loaded.
MODEL_CLASSES: dict[str, str] = {
    "clip_vision_model": "CLIPVisionModel",
    "clip": "CLIPVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "siglip": "SiglipVisionModel",
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
}
MULTIMODAL_TYPES = ("llava", "llava_next")

# Attribute paths tried in order; transformers 5 dropped the `vision_model` level in
# CLIPVisionModel, earlier releases had it.
TOWER_PATHS = (("model", "vision_tower"), ("vision_tower",))
PROJECTOR_PATHS = (("model", "multi_modal_projector"), ("multi_modal_projector",))
BLOCK_PATHS = (("encoder", "layers"), ("vision_model", "encoder", "layers"), ("encoder", "layer"))


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

    def to_dict(self) -> dict:
        return asdict(self)


def _get_path(obj, path: tuple[str, ...]):
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def find_tower(model: nn.Module) -> nn.Module:
    for path in TOWER_PATHS:
        tower = _get_path(model, path)
        if isinstance(tower, nn.Module):
            return tower
    return model


def find_projector(model: nn.Module) -> nn.Module | None:
    for path in PROJECTOR_PATHS:
        projector = _get_path(model, path)
        if isinstance(projector, nn.Module):
            return projector
    return None


def find_blocks(model: nn.Module) -> nn.ModuleList:
    tower = find_tower(model)
    for path in BLOCK_PATHS:
        blocks = _get_path(tower, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks
    looked = ", ".join(".".join(p) for p in BLOCK_PATHS)
    raise BlocksNotFoundError(
        f"{type(model).__name__}: cannot find the vision encoder blocks (looked for a non-empty ModuleList at "
        f"{looked} under the vision tower {type(tower).__name__})"
    )


def _read_model_type(path: Path) -> str:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: expected a save_pretrained folder")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"{config_file}: model_type {model_type!r} is not supported; allowed: {sorted(MODEL_CLASSES)}"
        )
    return model_type


def load_vision_model(
    path: str | Path, *, dtype: torch.dtype | str | None = None, keep_language_model: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """Load a checkpoint folder with the real `from_pretrained` and describe its vision side.

    For LLaVA models, unless `keep_language_model`, the language model is built with no
    decoder layers, so its weights are never read (a 7B LLaVA loads in about the memory of
    its vision tower, projector and embeddings), and the rest of it is dropped after loading:
    training only needs the tower and the projector.
    """
    import transformers

    path = Path(path)
    model_type = _read_model_type(path)
    cls = getattr(transformers, MODEL_CLASSES[model_type])
    kwargs = {} if dtype is None else {"dtype": dtype}
    vision_only = model_type in MULTIMODAL_TYPES and not keep_language_model
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
    )


class AdaptedEncoder(nn.Module):
    """A frozen vision encoder with one trainable adapter on the input of each block.

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
        use_projector: bool = False,
        adapter_factory: Callable[[int], nn.Module] | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.info = info or describe(model)
        # Plain attributes, not submodules: they live inside `model` already.
        self.__dict__["tower"] = find_tower(model)
        self.__dict__["blocks"] = find_blocks(model)
        self.grid: PatchGrid = grid_for(self.tower.config)
        self.adapter_cfg = adapter_cfg or AdapterConfig()
        num_layers = len(self.blocks)
        self.feature_layer = self.info.default_feature_layer if feature_layer is None else int(feature_layer)
        if not -(num_layers + 1) <= self.feature_layer <= num_layers:
            raise ValueError(
                f"feature_layer must be in [{-(num_layers + 1)}, {num_layers}] for {num_layers} blocks, "
                f"got {self.feature_layer}"
            )
        self.__dict__["projector"] = find_projector(model) if self.tower is not model else None
        if use_projector and self.projector is None:
            raise ValueError(f"use_projector=True but {type(model).__name__} has no multimodal projector")
        self.use_projector = use_projector

        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()

        factory = adapter_factory if adapter_factory is not None else partial(MAAAdapter, cfg=self.adapter_cfg)
        self.adapters = nn.ModuleList(self._make_adapters(factory, num_layers))
        ref = next(model.parameters())
        self.adapters.to(device=ref.device)
        if not self.adapter_cfg.fp32:
            self.adapters.to(dtype=ref.dtype)

        # hidden_states[k] as transformers counts them: k < L is block k's input (before its
        # adapter, as in the release), k == L the last block's output.
        self._capture_index = self.feature_layer % (num_layers + 1)
        self._use_last_hidden_state = self.tower is model and self.feature_layer == -1
        self._enabled = True
        self._captured: torch.Tensor | None = None
        self._hooks: list = []
        self.install_hooks()

    def _make_adapters(self, factory: Callable[[int], nn.Module], num_layers: int) -> list[nn.Module]:
        return [factory(self.tower.config.hidden_size) for _ in range(num_layers)]

    # -- hooks -------------------------------------------------------------------------------
    def _pre_hook(self, index: int, module: nn.Module, args: tuple, kwargs: dict):
        in_kwargs = len(args) == 0  # `not args` on a tuple is a graph break under torch.compile
        hidden = kwargs["hidden_states"] if in_kwargs else args[0]
        if index == self._capture_index:
            self._captured = hidden
        if not self._enabled or len(self.adapters) == 0:
            return None
        adapted = self.adapters[index](hidden, self.grid)
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

    def features(self, pixel_values: torch.Tensor, *, adapters: bool = True) -> torch.Tensor:
        """Patch tokens [B, P, D] of `feature_layer` (prefix removed), optionally projected.

        AnyRes input [B, crops, 3, H, W] is flattened to B*crops images of the base size."""
        patches = self.tokens(pixel_values, adapters=adapters)[:, self.grid.prefix :]
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
            "use_projector": self.use_projector,
            "grid": asdict(self.grid),
        }


__all__ = [
    "AdaptedEncoder",
    "BlocksNotFoundError",
    "ModelInfo",
    "PREFIX_TOKENS",
    "describe",
    "find_blocks",
    "find_projector",
    "find_tower",
    "load_vision_model",
]
