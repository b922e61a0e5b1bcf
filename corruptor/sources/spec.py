"""A named, weighted source as the user gives it: ``--source NAME=PATH[:weight]``.

The path's form picks the scheme that scans it (corruptor.sources.scheme): a folder, a
path list, WebDataset tars, a ref/dis pair folder, or one of the prefixed forms below.
"""
from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from maa_format.errors import describe_validation_error

KINDS: tuple[str, ...] = ("photo", "web", "ocr")
EMBEDDED_PHOTOS = "embedded:photos"
SYNTHETIC_PREFIX = "synthetic:"
PDF_PREFIX = "pdf:"  # pages of PDF documents, see corruptor.sources.pdf
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")
_FIELDS = ("name", "path", "kind", "weight")


class SourceError(ValueError):
    """A source that cannot be used: raised before any work starts."""


class SourceSpec(BaseModel):
    """``SourceSpec(name, path, kind="photo", weight=1.0)``; a bad field raises `SourceError`
    naming it. An integer weight stays an integer (it is written into plan.json as given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: str
    kind: str = "photo"
    weight: int | float = 1.0

    def __init__(self, *args: Any, **data: Any) -> None:
        if len(args) > len(_FIELDS):
            raise TypeError(f"SourceSpec takes at most {len(_FIELDS)} positional arguments ({', '.join(_FIELDS)})")
        data.update(zip(_FIELDS, args))
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise SourceError(describe_validation_error(exc)) from None

    @field_validator("path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME_RE.match(name):
            raise ValueError(f"source name '{name}': use letters, digits, '_' and single '-' only "
                             "(it becomes part of every sample key)")
        return name

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str, info: ValidationInfo) -> str:
        if kind not in KINDS:
            raise ValueError(f"source '{info.data.get('name')}': kind '{kind}' not allowed; allowed: {', '.join(KINDS)}")
        return kind

    @field_validator("weight", mode="before")
    @classmethod
    def _weight(cls, weight: Any, info: ValidationInfo) -> Any:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (weight > 0):
            raise ValueError(f"source '{info.data.get('name')}': weight must be > 0, got {weight}")
        return weight

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def infer_kind(path: str) -> str:
    return "ocr" if path.startswith((SYNTHETIC_PREFIX, PDF_PREFIX)) else "photo"


def parse_source_arg(text: str, kinds: dict[str, str] | None = None) -> SourceSpec:
    """``NAME=PATH[:weight]``; synthetic sources read ``NAME=synthetic:ocr[:count[:weight]]``,
    PDF sources ``NAME=pdf:PATH[?dpi=N&max_pages=N&max_side=N][:weight]``."""
    if "=" not in text:
        raise SourceError(f"--source '{text}': expected NAME=PATH[:weight]")
    name, _, rest = text.partition("=")
    if not rest:
        raise SourceError(f"--source '{text}': empty PATH")
    weight = 1.0
    if rest.startswith(SYNTHETIC_PREFIX):
        parts = rest.split(":")
        if len(parts) > 4:
            raise SourceError(f"--source '{text}': expected synthetic:ocr[:count[:weight]]")
        if len(parts) == 4:
            weight = _parse_weight(text, parts.pop())
        path = ":".join(parts)
    elif rest.startswith(PDF_PREFIX):
        # Only a number after a second colon is a weight: 'pdf:2' is a folder named 2.
        head, sep, tail = rest[len(PDF_PREFIX):].rpartition(":")
        path = rest
        if sep and head and _is_number(tail):
            path, weight = PDF_PREFIX + head, _parse_weight(text, tail)
    else:
        head, sep, tail = rest.rpartition(":")
        path = rest
        if sep and head and head != "embedded" and _is_number(tail):
            path, weight = head, _parse_weight(text, tail)
    kinds = kinds or {}
    kind = kinds.get(name) or infer_kind(path)
    return SourceSpec(name=name, path=path, kind=kind, weight=weight)


def parse_kind_arg(text: str) -> tuple[str, str]:
    name, sep, kind = text.partition("=")
    if not sep or kind not in KINDS:
        raise SourceError(f"--source-kind '{text}': expected NAME=KIND with KIND one of {', '.join(KINDS)}")
    return name, kind


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_weight(text: str, value: str) -> float:
    try:
        weight = float(value)
    except ValueError:
        raise SourceError(f"--source '{text}': weight '{value}' is not a number") from None
    if not weight > 0:
        raise SourceError(f"--source '{text}': weight must be > 0, got {value}")
    return weight


def demo_sources(ocr_pages: int = 16) -> list[SourceSpec]:
    """The embedded demo: scikit-image's photos plus synthetic OCR-heavy pages."""
    return [
        SourceSpec("photos", EMBEDDED_PHOTOS, kind="photo", weight=1.0),
        SourceSpec("ocr", f"synthetic:ocr:{ocr_pages}", kind="ocr", weight=1.0),
    ]
