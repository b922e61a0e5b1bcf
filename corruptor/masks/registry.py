"""The mask-source registry: a kind name -> how to check its settings and build the source.

A new source is one module that defines the source class and decorates it with
``@register_mask_source("kind")``, plus its module name in ``MASK_SOURCE_MODULES`` and its
kind in ``source.MASK_SOURCE_KINDS`` (with its settings model on ``MaskSourceConfig``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from corruptor.masks.source import MaskSource, MaskSourceConfig, MaskSourceError

Check = Callable[[MaskSourceConfig], None]


@dataclass(frozen=True)
class MaskSourceKind:
    name: str
    build: Callable[[MaskSourceConfig], MaskSource]
    check: Check          # raises MaskSourceError for settings that cannot work


MASK_SOURCES: dict[str, MaskSourceKind] = {}

# Modules whose import registers sources (imported on first use: SAM2 pulls in torch).
MASK_SOURCE_MODULES: tuple[str, ...] = (
    "corruptor.masks.skimage",
    "corruptor.masks.sam2",
    "corruptor.masks.precomputed",
)


def _no_check(cfg: MaskSourceConfig) -> None:
    return None


def register_mask_source(*kinds: str, check: Check = _no_check):
    def deco(build):
        for kind in kinds:
            if kind in MASK_SOURCES:
                raise ValueError(f"mask source '{kind}' registered twice")
            MASK_SOURCES[kind] = MaskSourceKind(kind, build, check)
        return build

    return deco


def load_all() -> dict[str, MaskSourceKind]:
    for module in MASK_SOURCE_MODULES:
        importlib.import_module(module)
    return MASK_SOURCES


def get_kind(name: str) -> MaskSourceKind:
    kinds = load_all()
    if name not in kinds:
        raise MaskSourceError(f"unknown mask source '{name}'; allowed: {', '.join(sorted(kinds))}")
    return kinds[name]


def validate(cfg: MaskSourceConfig) -> None:
    """Every check that can fail before work starts; raises `MaskSourceError`."""
    get_kind(cfg.kind).check(cfg)


def make_mask_source(cfg: MaskSourceConfig) -> MaskSource:
    """Validate, then build the source (SAM2 loads its model here, once)."""
    kind = get_kind(cfg.kind)
    kind.check(cfg)
    return kind.build(cfg)
