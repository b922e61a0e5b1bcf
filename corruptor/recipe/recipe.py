"""Recipes: YAML files (or mappings, or built-in names) loaded and validated into a `Recipe`.

This is the module to import: it loads, names the built-in recipes shipped in
corruptor/recipe/builtin, and re-exports what a caller of a recipe needs (`Recipe`,
`Applied`, `replay`, `plan`). The schema is in corruptor.recipe.schema (nodes in
corruptor.recipe.nodes), applying in corruptor.recipe.apply. Validation happens once, at
load, and every error is one line naming its field path and the allowed values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from corruptor.recipe.apply import Applied, plan, replay
from corruptor.recipe.schema import Recipe
from maa_format.errors import describe_validation_error
from maa_format.safe_yaml import YamlLoadError, load_file

__all__ = ["Applied", "Recipe", "RecipeError", "builtin_recipe", "builtin_recipe_path", "builtin_recipes",
           "load_recipe", "plan", "replay"]

BUILTIN_DIR = Path(__file__).parent / "builtin"  # package data: corruptor needs no other package


class RecipeError(ValueError):
    """A recipe that cannot be loaded; the message names each bad field and what is allowed."""


def builtin_recipes() -> tuple[str, ...]:
    """Names of the recipes shipped in corruptor/recipe/builtin."""
    folder = BUILTIN_DIR
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def builtin_recipe_path(name: str) -> Path:
    path = BUILTIN_DIR / f"{name}.yaml"
    if not path.is_file():
        raise RecipeError(f"unknown built-in recipe '{name}'; allowed: {', '.join(builtin_recipes())}")
    return Path(str(path))


def builtin_recipe(name: str) -> Recipe:
    """A shipped recipe by name, e.g. ``builtin_recipe("maa-paper")``."""
    return load_recipe(builtin_recipe_path(name))


def load_recipe(source: str | Path | Mapping[str, Any] | Recipe) -> Recipe:
    """A recipe from a YAML path, a built-in name (``maa-paper``) or a mapping; validated."""
    if isinstance(source, Recipe):
        return source
    label = ""
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            if isinstance(source, str) and "/" not in source and not source.endswith((".yaml", ".yml")):
                path = builtin_recipe_path(source)
            else:
                raise RecipeError(f"recipe file not found: {path}; built-in recipes: {', '.join(builtin_recipes())}")
        label = str(path)
        try:
            data = load_file(path, label)  # bounded: size, alias expansion, depth, UTF-8
        except YamlLoadError as exc:
            raise RecipeError(f"recipe {exc}") from None
        except OSError as exc:
            raise RecipeError(f"recipe {label}: cannot read: {exc}") from None
        if isinstance(data, dict):
            data.setdefault("name", path.stem)
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {label}: the top level must be a mapping with keys "
                          f"{', '.join(f.alias or n for n, f in Recipe.model_fields.items())}; "
                          f"got {type(data).__name__}")
    backend = data.get("backend", "native")
    try:
        return Recipe.model_validate(data, context={"backend": backend})
    except ValidationError as exc:
        head = f"invalid recipe {label}" if label else "invalid recipe"
        raise RecipeError(describe_validation_error(exc, head, root="recipe")) from None
