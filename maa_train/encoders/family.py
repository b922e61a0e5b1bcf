"""Encoder families: everything the toolkit knows about one kind of Hugging Face vision model.

A family names the transformers class that loads a checkpoint, where the vision tower,
its blocks and the multimodal projector sit, how many prefix tokens come before the
patch grid, the image processor's defaults, the LoRA target modules, and whether the
model is a VLM whose config picks the feature layer. Adding a family is one module that
calls ``register(EncoderFamily(...))`` plus its name in ``FAMILY_MODULES``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

Path_ = tuple[str, ...]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EncoderFamily:
    name: str
    model_class: str                    # transformers class the checkpoint loads as
    model_types: tuple[str, ...]        # config.json model_type values loaded with model_class
    vision_types: tuple[str, ...] = ()  # tower config model_type values this family describes
    prefix_tokens: int = 1              # tokens before the row-major patch grid (CLS, registers)
    block_paths: tuple[Path_, ...] = ()  # non-empty ModuleList of blocks, under the tower
    tower_paths: tuple[Path_, ...] = ()  # the vision tower inside a VLM; () for a bare encoder
    projector_paths: tuple[Path_, ...] = ()
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF
    lora_targets: str = ""              # regex of the attention projections, relative to the tower
    multimodal: bool = False            # config.vision_feature_layer picks the features
    # Position embeddings fixed to config.image_size (the grid comes from the config, and a
    # mismatch is an error); False: they interpolate, the grid follows the input's size.
    fixed_size: bool = True


FAMILIES: dict[str, EncoderFamily] = {}

# Modules whose import registers families; order is the listing order.
FAMILY_MODULES: tuple[str, ...] = (
    "maa_train.encoders.clip",
    "maa_train.encoders.siglip",
    "maa_train.encoders.llava",
    "maa_train.encoders.dinov2",
    "maa_train.encoders.vit",
)


class UnknownFamilyError(ValueError):
    pass


def register(family: EncoderFamily) -> EncoderFamily:
    if family.name in FAMILIES:
        raise ValueError(f"encoder family '{family.name}' registered twice")
    FAMILIES[family.name] = family
    return family


def load_all() -> dict[str, EncoderFamily]:
    for module in FAMILY_MODULES:
        importlib.import_module(module)
    return FAMILIES


def loadable_types() -> list[str]:
    return sorted(t for f in load_all().values() for t in f.model_types)


def family_for_checkpoint(model_type: str | None) -> EncoderFamily:
    """The family that loads a checkpoint whose config.json says ``model_type``."""
    for family in load_all().values():
        if model_type in family.model_types:
            return family
    raise UnknownFamilyError(f"model_type {model_type!r} is not supported; allowed: {loadable_types()}")


def family_for_type(model_type: str | None) -> EncoderFamily:
    """The family of a loaded module's config model_type (a tower's or a whole model's)."""
    families = load_all().values()
    for family in families:
        if model_type in family.vision_types:
            return family
    for family in families:
        if model_type in family.model_types:
            return family
    known = sorted(t for f in families for t in (*f.vision_types, *f.model_types))
    raise UnknownFamilyError(f"model_type {model_type!r} has no known encoder family; allowed: {known}")
