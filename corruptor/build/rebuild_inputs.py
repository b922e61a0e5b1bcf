"""What ``rebuild`` takes from an old dataset, checked first: its plan's items and its mask cache.

``plan.json`` names every file a rebuild reads (source images, members of source tars), and
``masks/`` is linked into the new dataset. Both come with the dataset, which may have come
from anyone, so before anything is read or written:

- the sources declared in ``plan.json`` must be valid source specs and match the ones in
  ``dataset.json``; every item must name one of them, with a locator of that source's type,
  lying inside it: a folder source's files under its folder (by path components: links inside
  a user's own source folder are the user's, as when it was scanned) and with an image
  extension, a pair folder's under its ``ref/`` and ``dis/``, a list source's among the files
  its list names, a tar source's among the tars its pattern matches;
- ``masks/`` and everything under it must be regular files and folders inside the dataset:
  a symbolic link is refused, never followed into a hard link or a copy.

Refusals are `DatasetFileError` / `UnsafePathError` (ValueErrors) naming the file and field.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath
from typing import Any

from corruptor.masks.cache import is_temp
from corruptor.build.planner import Plan
from corruptor.sources.sources import IMAGE_EXTENSIONS, SYNTHETIC_PREFIX, SourceError, SourceSpec, list_entries
from maa_format.dataset_files import DatasetFileError
from maa_format.paths import UnsafePathError, is_within, lexically_within, link_or_copy_regular

_FILE_TYPES = ("folder", "paired", "list")


def _spec(src: dict[str, Any], field: str, file: str) -> SourceSpec:
    try:
        return SourceSpec(src["name"], src["path"], src["kind"], src["weight"])
    except SourceError as exc:
        raise DatasetFileError(f"{file}: {field}: {exc}") from None


def _tar_paths(path: str) -> set[str]:
    if path.endswith(".tar") or any(c in path for c in "*?["):
        found = glob.glob(path) if any(c in path for c in "*?[") else [path]
    else:  # an img2dataset folder: its tars
        found = glob.glob(str(Path(path) / "*.tar"))
    return {os.path.abspath(p) for p in found}


class _Source:
    """One declared source and the test an item's locator must pass to be inside it."""

    def __init__(self, src: dict[str, Any], field: str, file: str):
        self.spec = _spec(src, field, file)
        self.type = src.get("type")
        if self.type is None:
            raise DatasetFileError(f"{file}: {field}.type: missing")
        self.field, self.file = field, file
        self._listed: set[str] | None = None
        self._tars: set[str] | None = None

    def fail(self, field: str, problem: str) -> DatasetFileError:
        return DatasetFileError(f"{self.file}: {field}: {problem} (declared source {self.spec.name!r}: "
                                f"{self.type} {self.spec.path!r})")

    def listed(self) -> set[str]:
        if self._listed is None:
            path = Path(self.spec.path)
            try:
                entries = list_entries(self.spec, path)
            except (OSError, SourceError, ValueError) as exc:
                raise DatasetFileError(f"{self.file}: {self.field}: cannot read the list source {path}: "
                                       f"{exc}") from None
            self._listed = {str(Path(e) if os.path.isabs(e) else path.parent / e) for e in entries}
        return self._listed

    def check(self, loc: list, field: str, sub: str | None = None) -> None:
        kind, args = loc[0], loc[1:]
        wants = {"folder": "file", "paired": "file", "list": "file", "webdataset": "tar",
                 "synthetic": "synthetic", "embedded": "embedded", "pdf": "pdf"}[self.type]
        if kind != wants:
            raise self.fail(field, f"a {kind} locator in a {self.type} source (expected {wants})")
        if kind == "file":
            path = args[0]
            if self.type == "list":
                if path not in self.listed():
                    raise self.fail(field, f"file {path!r} is not one of the files the list names")
                return
            base = Path(self.spec.path) / sub if sub else Path(self.spec.path)
            name = PurePosixPath(path).name
            if not lexically_within(path, base):
                raise self.fail(field, f"file {path!r} is not inside {str(base)!r}")
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                raise self.fail(field, f"file {path!r} is not an image file name this source type scans")
        elif kind == "tar":
            if self._tars is None:
                self._tars = _tar_paths(self.spec.path)
            if os.path.abspath(args[0]) not in self._tars:
                raise self.fail(field, f"tar {args[0]!r} is not one the source's path matches")
        elif kind == "synthetic":
            want = self.spec.path[len(SYNTHETIC_PREFIX):].split(":")[0]
            if args[0] != want:
                raise self.fail(field, f"synthetic generator {args[0]!r} is not the source's ({want!r})")
        elif kind == "pdf":
            # pdf:PATH[?options]: PATH is a folder scanned for *.pdf or one PDF file
            base = self.spec.path[len("pdf:"):].partition("?")[0]
            path = args[0]
            inside = os.path.abspath(path) == os.path.abspath(base) or lexically_within(path, base)
            if not inside or not path.lower().endswith(".pdf"):
                raise self.fail(field, f"pdf {path!r} is not a PDF file inside {base!r}")
        elif kind == "embedded":
            from corruptor.sources.samples import SAMPLE_PHOTOS

            if args[0] not in SAMPLE_PHOTOS:
                raise self.fail(field, f"embedded photo {args[0]!r} does not exist")


def check_plan_sources(plan: Plan, dataset_sources: list | None, file: str) -> list[SourceSpec]:
    """Check that every item of ``plan`` reads only inside the sources it declares (which must be
    the ones ``dataset.json`` records); returns those sources' specs."""
    if dataset_sources is not None and dataset_sources != plan.sources:
        raise DatasetFileError(f"{file}: plan.sources: differ from the sources dataset.json records")
    sources = {}
    for i, src in enumerate(plan.sources):
        source = _Source(src, f"plan.sources[{i}]", file)
        if source.spec.name in sources:
            raise DatasetFileError(f"{file}: plan.sources[{i}].name: {source.spec.name!r} is declared twice")
        sources[source.spec.name] = source
    for i, item in enumerate(plan.items):
        field = f"plan.items[{i}]"
        source = sources[item.source]  # the schema check made sure it is declared
        paired = source.type == "paired"
        if paired != (item.dis_locator is not None):
            raise source.fail(field, "a paired source's items (only) carry dis_locator")
        source.check(item.locator.to_list(), f"{field}.locator", "ref" if paired else None)
        if paired:
            source.check(item.dis_locator.to_list(), f"{field}.dis_locator", "dis")
    return [s.spec for s in sources.values()]


def share_mask_cache(old_dir: Path, new_masks: Path) -> int:
    """Link (or copy) the old dataset's ``masks/`` cache files into ``new_masks``; returns how many.
    Everything is checked before the first link: a symbolic link or a non-regular file anywhere
    under ``masks/`` (or ``masks`` itself leading out of the dataset) refuses the whole cache."""
    old_dir, src = Path(old_dir), Path(old_dir) / "masks"
    if src.is_symlink() or (src.exists() and not is_within(src, old_dir)):
        raise UnsafePathError(f"{src} is a symbolic link; a dataset's mask cache must be a folder inside it")
    if not src.is_dir():
        return 0
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        here = Path(dirpath)
        rel = here.relative_to(src)
        dirs.append(rel)
        for d in sorted(dirnames):
            if (here / d).is_symlink():
                raise UnsafePathError(f"{here / d} is a symbolic link; a mask cache holds regular files only "
                                      f"(remove it and run again)")
        for name in sorted(filenames):
            path = here / name
            if path.is_symlink() or not path.is_file():
                what = "a symbolic link" if path.is_symlink() else "not a regular file"
                raise UnsafePathError(f"{path} is {what}; a mask cache holds regular files only "
                                      f"(remove it and run again)")
            if not is_temp(name):  # an interrupted writer's leftover, not a cache entry
                files.append(rel / name)
    for rel in dirs:
        (new_masks / rel).mkdir(parents=True, exist_ok=True)
    linked = 0
    for rel in files:
        target = new_masks / rel
        if os.path.lexists(target):
            continue
        # Cache files are never modified in place, so sharing them is safe.
        link_or_copy_regular(src / rel, target, "masks")
        linked += 1
    return linked


__all__ = ["check_plan_sources", "share_mask_cache"]
