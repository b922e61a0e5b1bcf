"""Source schemes by name: the form of a source's path picks the scheme that scans it.

A scheme is a class registered with ``@register_scheme("name")`` in its own module under
corruptor.sources.schemes; the name is the ``type`` a scanned source records in plan.json
and dataset.json. SCHEME_MODULES lists those modules, in the order their schemes are asked
whether they ``claims`` a path (prefixed forms first, then tars and globs, then what is on
disk). Adding a scheme is one module plus one line here; tests/corruptor/sources/
test_schemes.py checks every registered scheme against the interface.

    class Scheme:
        name: str                                   # set by register_scheme
        def claims(self, path: str) -> bool         # this path is of my form
        def normalize(self, path: str) -> str       # the form stored in plans (absolute paths)
        def scan(self, spec) -> ScannedSource       # sorted items; SourceError if unusable
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Protocol

from corruptor.sources.item import ScannedSource
from corruptor.sources.spec import SourceSpec

SCHEME_MODULES: tuple[str, ...] = (
    "corruptor.sources.schemes.synthetic",
    "corruptor.sources.schemes.pdf_pages",
    "corruptor.sources.schemes.embedded",
    "corruptor.sources.schemes.webdataset",
    "corruptor.sources.schemes.paired",
    "corruptor.sources.schemes.folder",
    "corruptor.sources.schemes.path_list",
)
SCHEMES: dict[str, "Scheme"] = {}


class Scheme(Protocol):
    name: str

    def claims(self, path: str) -> bool: ...

    def normalize(self, path: str) -> str: ...

    def scan(self, spec: SourceSpec) -> ScannedSource: ...


class OnDisk:
    """Base of schemes that read files: stored absolute, so a resume or rebuild from another
    folder, or a Ray worker with another working folder, reads the same files."""

    name = ""

    def normalize(self, path: str) -> str:
        return os.path.abspath(path)


def register_scheme(name: str) -> Callable[[type], type]:
    def add(cls: type) -> type:
        if name in SCHEMES and type(SCHEMES[name]) is not cls:
            raise ValueError(f"source scheme '{name}' is registered twice")
        cls.name = name
        SCHEMES[name] = cls()
        return cls

    return add


def load_schemes() -> list["Scheme"]:
    """Every registered scheme, in the order they are asked to claim a path."""
    for module in SCHEME_MODULES:
        importlib.import_module(module)
    order = {module: i for i, module in enumerate(SCHEME_MODULES)}
    return sorted(SCHEMES.values(), key=lambda s: order.get(type(s).__module__, len(order)))


def scheme_for(spec: SourceSpec) -> "Scheme":
    """The first scheme that claims ``spec.path``; `SourceError` naming the forms when none does."""
    from corruptor.sources.spec import EMBEDDED_PHOTOS, SourceError

    for scheme in load_schemes():
        if scheme.claims(spec.path):
            return scheme
    if not os.path.exists(spec.path):
        raise SourceError(f"source '{spec.name}': path {os.path.abspath(spec.path)} does not exist")
    raise SourceError(
        f"source '{spec.name}': {os.path.abspath(spec.path)} is not a folder, a .txt/.parquet list, a .tar shard, "
        f"'{EMBEDDED_PHOTOS}', 'synthetic:ocr[:count]' or 'pdf:FOLDER'"
    )
