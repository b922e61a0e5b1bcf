"""The one pydantic-error formatter: one line, each field named, the bad value shown."""
from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from maa_format.errors import describe_validation_error, field_path


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(default=1, ge=1)


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    mode: Literal["a", "b"] = "a"
    items: list[Inner] = []

    @field_validator("name")
    @classmethod
    def _short(cls, value: str) -> str:
        if len(value) > 3:
            raise ValueError(f"name '{value}' is longer than 3 characters")
        return value


def _error(doc: dict) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Outer.model_validate(doc)
    return info.value


def test_one_line_naming_every_field():
    text = describe_validation_error(_error({"mode": "c", "items": [{"size": 1}, {"size": 0}], "extra": 1}))
    assert "\n" not in text
    assert text.split("; ") == [
        "name: required field is missing",
        "mode: Input should be 'a' or 'b' (got 'c')",
        "items[1].size: Input should be greater than or equal to 1 (got 0)",
        "extra: unknown key",
    ]


def test_own_validator_message_is_kept_as_written_and_source_and_root_prefix():
    exc = _error({"name": "long"})
    assert describe_validation_error(exc) == "name: name 'long' is longer than 3 characters"
    assert describe_validation_error(exc, "cfg.yaml", root="config") == \
        "cfg.yaml: config.name: name 'long' is longer than 3 characters"


def test_long_values_are_cut_and_tags_and_empty_paths_named():
    text = describe_validation_error(_error({"name": "x", "mode": "z" * 500}))
    assert len(text) < 200 and text.endswith("...)")
    assert field_path(("global", "<op>", "one_of", 2, "op"), "recipe") == "recipe.global.one_of[2].op"
    assert field_path(()) == "(top level)"
