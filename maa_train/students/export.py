"""Trained adapters inside a `transformers` LLaVA or LLaVA-NeXT model, for VLM benchmarks.

`attach_adapters(model, adapters_dir)` loads an adapter checkpoint (checked against the
model's vision tower), registers the adapter of vision block i (every block before the
feature layer, or those of `adapter.blocks`) as its submodule `maa_adapter`
(the public release's parameter names: `...encoder.layers.{i}.maa_adapter.<name>`) and a
forward pre-hook that applies it to the block's input. The hooks stay active for every
forward, `generate()` included, so a benchmark harness that loads the model itself only
needs one call after loading. `.to(device)` and dtype casts reach the adapters because they
are submodules; `adapters_disabled(model)` switches them off for A/B runs.

There is no "merged" export: the adapters are non-linear (LayerNorm, GELU MLP, window
attention, max-pool) on block inputs, so they cannot be folded into the encoder's weights.
`save_release_checkpoint` writes the release's format (a state dict of the `.maa_adapter.`
keys) instead, which `maa_train.students.official` and the release's own loader read.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from maa_train.students.adapter import AdapterConfig, MAAAdapter, cache_weights
from maa_train.students.baselines import make_student
from maa_train.students.checkpoint import load_adapters, read_config
from maa_train.encoders.grid import PatchGrid
from maa_train.encoders.load import describe, find_blocks, load_vision_model

ADAPTER_ATTR = "maa_adapter"
ATTACHMENT_ATTR = "maa_attachment"
# Kinds whose trained part is one module per block input; LoRA and full fine-tuning change
# the tower's own weights and are exported by loading those weights instead.
EXPORTABLE_KINDS = ("maa", "mse_only", "bottleneck")


@dataclass
class Attachment:
    """What `attach_adapters` added to a model; kept on it as `model.maa_attachment`."""

    source: str
    config: dict
    grid: PatchGrid
    grid_width: int = 0  # hidden size of the tower (for identity adapters on export)
    handles: list = field(default_factory=list)
    enabled: bool = True


def _pre_hook(attachment: Attachment, adapter: nn.Module, module: nn.Module, args: tuple, kwargs: dict):
    if not attachment.enabled:
        return None
    if args:
        return (adapter(args[0], attachment.grid), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": adapter(kwargs["hidden_states"], attachment.grid)}


def attach_adapters(model: nn.Module, adapters_dir: str | Path) -> nn.Module:
    """Load the checkpoint in `adapters_dir` into `model`'s vision tower and keep it active.

    `model` is a LLaVA / LLaVA-NeXT model (or a bare CLIP/SigLIP vision model) as loaded by
    `from_pretrained`. Its parameters are set to requires_grad=False and it is put in eval
    mode. Raises CheckpointMismatchError when the checkpoint was made for another encoder
    (width, depth, adapter settings)."""
    if getattr(model, ATTACHMENT_ATTR, None) is not None:
        raise ValueError("adapters are already attached to this model; call detach_adapters(model) first")
    adapters_dir = Path(adapters_dir)
    saved = read_config(adapters_dir)
    kind = saved.get("kind", "maa")
    if kind not in EXPORTABLE_KINDS:
        raise ValueError(f"{adapters_dir}: checkpoints of kind {kind!r} cannot be attached; allowed kinds: "
                         f"{list(EXPORTABLE_KINDS)} (LoRA and full fine-tuning change the tower's own weights)")
    # The student is only a loader here: it builds the adapters, checks the checkpoint
    # against the tower and loads it; its own hooks are replaced by the ones below, which
    # do not capture hidden states.
    student = make_student(kind, model, AdapterConfig.from_dict(saved.get("adapter") or {}), info=describe(model))
    student.remove_hooks()
    load_adapters(adapters_dir, student)
    attachment = Attachment(source=str(adapters_dir), config=saved, grid=student.grid,
                            grid_width=student.info.hidden_size)
    cache_weights(student)  # fixed weights from here on: derive the compute weights once
    blocks = find_blocks(model)
    for index, adapter in zip(student.adapter_blocks, student.adapters):
        block = blocks[index]
        adapter.eval()
        block.add_module(ADAPTER_ATTR, adapter)
        attachment.handles.append(block.register_forward_pre_hook(
            lambda module, args, kwargs, adapter=adapter: _pre_hook(attachment, adapter, module, args, kwargs),
            with_kwargs=True))
    setattr(model, ATTACHMENT_ATTR, attachment)
    return model


def _attachment(model: nn.Module) -> Attachment:
    attachment = getattr(model, ATTACHMENT_ATTR, None)
    if attachment is None:
        raise ValueError("no adapters are attached to this model (see attach_adapters)")
    return attachment


def detach_adapters(model: nn.Module) -> nn.Module:
    """Remove the hooks and the `maa_adapter` submodules: the model is the stock one again."""
    attachment = _attachment(model)
    for handle in attachment.handles:
        handle.remove()
    for block in find_blocks(model):
        if ADAPTER_ATTR in block._modules:
            del block._modules[ADAPTER_ATTR]
    delattr(model, ATTACHMENT_ATTR)
    return model


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    attachment = _attachment(model)
    previous, attachment.enabled = attachment.enabled, False
    try:
        yield
    finally:
        attachment.enabled = previous


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The attached adapters' tensors under the model's own key names (`...layers.{i}.maa_adapter.*`)."""
    _attachment(model)
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if f".{ADAPTER_ATTR}." in k}


# The release loads into the original LLaVA code's naming (not transformers'), with
# strict=False: a key under any other name is silently dropped and that adapter stays identity.
RELEASE_BLOCK_PREFIX = "model.vision_tower.vision_tower.vision_model.encoder.layers.{i}.maa_adapter."


def release_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The attached adapters under the release's key names, one adapter for every block.

    Blocks after the feature layer (or outside `adapter.blocks`) carry no trained adapter; the
    release builds one for every block, so they are written as
    freshly initialised adapters, which are the identity (gates at 0), and its loader finds
    every key it expects."""
    attachment = _attachment(model)
    blocks = find_blocks(model)
    out: dict[str, torch.Tensor] = {}
    for i, block in enumerate(blocks):
        adapter = block._modules.get(ADAPTER_ATTR)
        if adapter is None:
            cfg = AdapterConfig.from_dict(attachment.config.get("adapter") or {})
            with torch.random.fork_rng(devices=[]):  # fixed weights, no draw from the caller's RNG
                torch.manual_seed(i)
                adapter = MAAAdapter(attachment.grid_width, cfg)
        for name, value in adapter.state_dict().items():
            out[RELEASE_BLOCK_PREFIX.format(i=i) + name] = value.detach().float().cpu().contiguous()
    return out


def save_release_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Write the attached adapters as the public release does: a torch pickle of a state dict
    of `.maa_adapter.` keys in the original LLaVA naming, fp32 (the release computes adapters
    in fp32)."""
    kind = _attachment(model).config.get("kind", "maa")
    if kind not in ("maa", "mse_only"):
        raise ValueError(f"adapters of kind {kind!r} have no counterpart in the release's format (MAA adapters only)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(release_state_dict(model), path)
    return path


def load_llava_with_adapters(model_dir: str | Path, adapters_dir: str | Path | None, *,
                             dtype: torch.dtype | str | None = None, device: str | torch.device | None = None):
    """`from_pretrained(model_dir)` with its language model kept, adapters attached, eval mode."""
    model, _ = load_vision_model(model_dir, dtype=dtype, keep_language_model=True)
    if device is not None:
        model.to(device)
    if adapters_dir is not None:
        attach_adapters(model, adapters_dir)
    return model.eval()


__all__ = [
    "ADAPTER_ATTR", "Attachment", "adapter_state_dict", "adapters_disabled", "attach_adapters", "detach_adapters",
    "load_llava_with_adapters", "release_state_dict", "save_release_checkpoint",
]
