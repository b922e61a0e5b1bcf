"""The JSON files of a built dataset, read with a size cap and checked against their schema.

``dataset.json``, ``plan.json`` and ``shards/*.stats.json`` are written by the corruptor and
read back by ``validate``, ``stats``, ``rebuild``, a resumed build and the trainer. A file
handed over with a dataset may hold anything, so every reader goes through here: the file
is read up to a size cap, parsed, and each field the readers use is checked for presence
and type before anyone indexes into it. A fault is a `DatasetFileError` (a ValueError) with
one line naming the file and the field, e.g. ``dataset.json: shards[2].tar: expected a
string, got int``. Paths inside these files are not checked here: that is
`maa_format.paths.confined`, at each place a path is opened.
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from maa_format.layout import DATASET_FILE, check_format
from maa_format.paths import is_within

MAX_JSON_BYTES = 64 << 20     # dataset.json and stats: a few KiB to a few MiB
MAX_PLAN_BYTES = 4 << 30      # plan.json grows with the sample count (~20 MB for 75K pairs)
LOCATOR_TYPES = ("file", "tar", "synthetic", "embedded", "pdf")
MAX_SYNTHETIC_SIDE = 8192     # synthetic pages are rendered at this size at most
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


class DatasetFileError(ValueError):
    """A dataset's JSON file that is unreadable or does not match its schema (one-line message)."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Checker:
    """Field checks for one file; every failure names the file and the field path."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, field: str, problem: str) -> DatasetFileError:
        return DatasetFileError(f"{self.file}: {field}: {problem}" if field else f"{self.file}: {problem}")

    def obj(self, value: Any, field: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(field, f"expected an object, got {_kind(value)}")
        return value

    def lst(self, value: Any, field: str) -> list:
        if not isinstance(value, list):
            raise self.fail(field, f"expected a list, got {_kind(value)}")
        return value

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise self.fail(field, f"expected a string, got {_kind(value)}")
        return value

    def integer(self, value: Any, field: str, low: int | None = 0, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"expected an integer, got {_kind(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise self.fail(field, f"expected an integer {bounds}, got {value}")
        return value

    def number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(field, f"expected a finite number, got {value!r}")
        return float(value)

    def key(self, doc: dict, key: str, field: str, check, *args, required: bool = True, nullable: bool = False):
        """``check(doc[key])`` when present; a missing required key or an unexpected null fails."""
        where = f"{field}.{key}" if field else key
        if key not in doc:
            if required:
                raise self.fail(where, "missing")
            return None
        value = doc[key]
        if value is None and nullable:
            return None
        return check(value, where, *args)


def read_json(path: str | os.PathLike, label: str | None = None, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON at ``path``. FileNotFoundError propagates (callers say what a missing file
    means); anything else wrong is a one-line `DatasetFileError`."""
    label = label or Path(path).name
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DatasetFileError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise DatasetFileError(f"{label}: larger than {max_bytes} bytes; not a file this format writes")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise DatasetFileError(f"{label}: not UTF-8 (byte 0x{byte:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetFileError(f"{label}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DatasetFileError(f"{label}: nested too deeply to be a file this format writes") from None


# --- dataset.json ------------------------------------------------------------------------


def _shard_name(c: _Checker, value: Any, field: str) -> str:
    name = c.string(value, field)
    if not _SHARD_NAME.match(name) or ".." in name:
        raise c.fail(field, f"shard name {name!r} must be one file-name component (letters, digits, '_', '-', '.')")
    return name


def check_dataset(doc: Any, file: str = "dataset.json", full: bool = True) -> dict:
    """``doc`` checked as a dataset.json. ``full``: as the corruptor writes it (every shard an
    object with name, tar, manifest and samples); otherwise the trainer's lenient form, where a
    shard may also be given by its name alone (``{"shards": ["000000", ...]}``)."""
    c = _Checker(file)
    c.obj(doc, "")
    shards = c.key(doc, "shards", "", c.lst)
    for i, entry in enumerate(shards):
        field = f"shards[{i}]"
        if isinstance(entry, str) and not full:
            _shard_name(c, entry, field)
            continue
        c.obj(entry, field)
        c.key(entry, "name", field, lambda v, f: _shard_name(c, v, f))
        c.key(entry, "tar", field, c.string, required=full)
        c.key(entry, "manifest", field, c.string, required=full)
        c.key(entry, "samples", field, c.integer, required=full)
        c.key(entry, "rows", field, c.integer, required=False)
        c.key(entry, "tar_sha256", field, c.string, required=False, nullable=True)
    counts = c.key(doc, "counts", "", c.obj, required=False)
    for k, v in (counts or {}).items():
        c.integer(v, f"counts.{k}")
    for i, src in enumerate(c.key(doc, "sources", "", c.lst, required=False) or []):
        _check_source(c, src, f"sources[{i}]")
    for k in ("format", "recipe_hash", "plan", "plan_hash", "image_format", "code_version"):
        c.key(doc, k, "", c.string, required=False)
    for k in ("seed", "target", "shard_size"):
        c.key(doc, k, "", c.integer, None, required=False)
    c.key(doc, "recipe", "", c.obj, required=False)
    for op, family in (c.key(doc, "op_families", "", c.obj, required=False) or {}).items():
        c.string(family, f"op_families.{op}")
    c.key(doc, "mask_source", "", c.obj, required=False, nullable=True)
    return doc


def read_dataset(root: str | os.PathLike, full: bool = True) -> dict:
    """``root/dataset.json``, parsed, its format version checked first (a `FormatError` from
    `maa_format.layout.check_format`), then its schema (see `check_dataset`)."""
    path = Path(root) / DATASET_FILE
    if not is_within(path, root):
        raise DatasetFileError(f"{path}: a symbolic link leading out of {root}; a dataset's files must lie inside it")
    doc = read_json(path, str(path))
    if isinstance(doc, dict):  # another version's file is reported as such, not as a schema mismatch
        check_format(doc, path)
    return check_dataset(doc, str(path), full)


# --- shards/*.stats.json -------------------------------------------------------------------

_STATS_COUNTS = ("rows", "ok", "failed", "skipped", "transient_failures", "tar_bytes", "written", "samples_ok", "n_ok")


def check_stats(doc: Any, file: str) -> dict:
    """``doc`` checked as a shard's done marker: the counts it holds are non-negative integers,
    the tar's digest and the shard's name strings."""
    c = _Checker(file)
    c.obj(doc, "")
    for k in _STATS_COUNTS:
        c.key(doc, k, "", c.integer, required=False)
    for k in ("tar_sha256", "shard"):
        c.key(doc, k, "", c.string, required=False)
    counts = c.key(doc, "counts", "", c.obj, required=False)
    if counts is not None:
        c.key(counts, "ok", "counts", c.integer, required=False)
    return doc


def read_stats(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """A stats file parsed and checked; ``required`` keys must be present."""
    label = str(path)
    doc = check_stats(read_json(path, label), label)
    for k in required:
        if k not in doc:
            raise DatasetFileError(f"{label}: {k}: missing")
    return doc


# --- plan.json -------------------------------------------------------------------------------

SOURCE_TYPES = ("folder", "paired", "list", "webdataset", "synthetic", "embedded", "pdf")


def _check_source(c: _Checker, src: Any, field: str) -> dict:
    c.obj(src, field)
    c.key(src, "name", field, c.string)
    c.key(src, "path", field, c.string)
    c.key(src, "kind", field, c.string)
    weight = c.key(src, "weight", field, c.number)
    if not weight > 0:
        raise c.fail(f"{field}.weight", f"expected a number > 0, got {weight}")
    stype = c.key(src, "type", field, c.string, required=False)
    if stype is not None and stype not in SOURCE_TYPES:
        raise c.fail(f"{field}.type", f"{stype!r} is not one of {', '.join(SOURCE_TYPES)}")
    return src


def _check_locator(c: _Checker, value: Any, field: str) -> list:
    loc = c.lst(value, field)
    if not loc:
        raise c.fail(field, "empty locator")
    kind = c.string(loc[0], f"{field}[0]")
    args = loc[1:]
    shapes = {"file": ("path",), "tar": ("path", "offset", "size"), "synthetic": ("kind", "index", "width", "height"),
              "embedded": ("name",), "pdf": ("path", "page", "dpi", "max_side")}
    if kind not in shapes:
        raise c.fail(f"{field}[0]", f"locator type {kind!r} is not one of {', '.join(LOCATOR_TYPES)}")
    if len(args) != len(shapes[kind]):
        raise c.fail(field, f"a {kind} locator has {len(shapes[kind])} argument(s) "
                            f"({', '.join(shapes[kind])}), got {len(args)}")
    for i, (arg, name) in enumerate(zip(args, shapes[kind]), start=1):
        where = f"{field}[{i}]"
        if name in ("path", "kind", "name"):
            c.string(arg, where)
        elif name in ("width", "height"):
            c.integer(arg, where, 1, MAX_SYNTHETIC_SIDE)
        else:
            c.integer(arg, where)
    return loc


def check_plan(doc: Any, file: str = "plan.json") -> dict:
    """``doc`` checked as plan.json: ``{"build": {...}, "plan": {...}}`` with typed sources, items
    (each naming a declared source, with a well-formed locator) and shards of
    ``[key, item, variant, crop]`` whose item indices exist."""
    c = _Checker(file)
    c.obj(doc, "")
    build = c.key(doc, "build", "", c.obj, required=False) or {}
    for k in ("seed", "target", "shard_size", "crops", "max_pixels", "min_side"):
        c.key(build, k, "build", c.integer, None, required=False)
    c.key(build, "variants", "build", c.integer, required=False, nullable=True)
    c.key(build, "recipe_hash", "build", c.string, required=False)
    c.key(build, "mask_source", "build", c.obj, required=False, nullable=True)
    plan = c.key(doc, "plan", "", c.obj)
    c.key(plan, "version", "plan", c.integer)
    c.key(plan, "seed", "plan", c.integer, None)
    c.key(plan, "target", "plan", c.integer, 1)
    c.key(plan, "shard_size", "plan", c.integer, 1)
    names = set()
    for i, src in enumerate(c.key(plan, "sources", "plan", c.lst)):
        names.add(_check_source(c, src, f"plan.sources[{i}]")["name"])
    for k, v in (c.key(plan, "quotas", "plan", c.obj, required=False) or {}).items():
        c.integer(v, f"plan.quotas.{k}")
    items = c.key(plan, "items", "plan", c.lst)
    for i, item in enumerate(items):
        field = f"plan.items[{i}]"
        c.obj(item, field)
        source = c.key(item, "source", field, c.string)
        if source not in names:
            raise c.fail(f"{field}.source", f"{source!r} is not a source declared in plan.sources")
        c.key(item, "ref", field, c.string)
        c.key(item, "locator", field, lambda v, f: _check_locator(c, v, f))
        if item.get("dis_locator") is not None:
            c.key(item, "dis_locator", field, lambda v, f: _check_locator(c, v, f))
            c.key(item, "dis_ref", field, c.string)
        c.key(item, "version", field, c.integer, required=False)
    for s, shard in enumerate(c.key(plan, "shards", "plan", c.lst)):
        for j, sample in enumerate(c.lst(shard, f"plan.shards[{s}]")):
            field = f"plan.shards[{s}][{j}]"
            if not isinstance(sample, list) or len(sample) != 4:
                raise c.fail(field, f"expected [key, item, variant, crop], got {_kind(sample)}")
            key = c.string(sample[0], f"{field}[0]")
            if not key or "." in key or "/" in key:
                raise c.fail(f"{field}[0]", f"sample key {key!r} must be non-empty without '.' or '/'")
            c.integer(sample[1], f"{field}[1]", 0, len(items) - 1)
            c.integer(sample[2], f"{field}[2]")
            c.integer(sample[3], f"{field}[3]")
    return doc


def read_plan(path: str | os.PathLike) -> dict:
    """A plan.json parsed and checked (see `check_plan`)."""
    return check_plan(read_json(path, str(path), MAX_PLAN_BYTES), str(path))


__all__ = ["DatasetFileError", "LOCATOR_TYPES", "MAX_JSON_BYTES", "MAX_PLAN_BYTES", "SOURCE_TYPES", "check_dataset",
           "check_plan", "check_stats", "read_dataset", "read_json", "read_plan", "read_stats"]
