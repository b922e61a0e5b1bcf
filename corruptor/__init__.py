"""corruptor: reproducible image corruptions, recipes and the sharded dataset build.

The public names are imported on first use, so ``import corruptor.ops.registry`` (done by
every op module and worker) does not pay for pydantic, YAML and OpenCV up front.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "corrupt": "corruptor.api",
    "Applied": "corruptor.recipe.recipe",
    "Recipe": "corruptor.recipe.recipe",
    "RecipeError": "corruptor.recipe.recipe",
    "builtin_recipe": "corruptor.recipe.recipe",
    "load_recipe": "corruptor.recipe.recipe",
    "replay": "corruptor.recipe.recipe",
}

# A literal, so linters see the lazy re-exports below as used (tests/test_lint.py keeps it equal to _PUBLIC).
__all__ = ["Applied", "Recipe", "RecipeError", "builtin_recipe", "corrupt", "load_recipe", "replay"]

if TYPE_CHECKING:
    from corruptor.api import corrupt
    from corruptor.recipe.recipe import Applied, Recipe, RecipeError, builtin_recipe, load_recipe, replay


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corruptor' has no attribute '{name}'")
