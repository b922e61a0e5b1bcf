"""What ``rebuild`` takes from an old dataset, checked first: its plan's items and its mask cache.

``plan.json`` names every file a rebuild reads (source images, members of source tars), and
``masks/`` is linked into the new dataset. Both come with the dataset, which may have come
from anyone, so before anything is read or written:

- the sources declared in ``plan.json`` must be valid source specs and match the ones in
  ``dataset.json``; every item must name one of them, with a locator of that source's type,
  lying inside it: a folder source's files under its folder (by path components: links inside
  a user's own source folder are the user's, as when it was scanned) and with an image
  extension, a pair folder's under its ``ref/`` and ``dis/``, a list source's among the files
  its list names, a tar source's among the tars its pattern matches (or a "refused" locator,
  which reads nothing), a pdf source's documents inside its folder;
- ``masks/`` and everything under it must be regular files and folders inside the dataset:
  a symbolic link is refused, never followed into a hard link or a copy;
- and the user must confirm what is read: every source read from disk restated with its
  name and path (``--source``), every file the mask settings read on a cache miss named
  again (``--sam2-checkpoint``, ``--precomputed-masks``), unless ``--trust-plan-paths``.

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
        if kind == "refused" and self.type == "webdataset":
            return  # a tar member that is a link, device or FIFO: it reads nothing, its row says why
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
            from corruptor.sources.pdf import PdfOptionError, parse_pdf_path

            try:
                root = parse_pdf_path(self.spec.path).path
            except PdfOptionError as exc:
                raise self.fail(field, str(exc)) from None
            path = args[0]
            # scan_pdf stores each document's resolved path: it must resolve inside the source
            if not path.lower().endswith(".pdf") or not is_within(path, root):
                raise self.fail(field, f"pdf {path!r} is not a .pdf file inside {root!r}")
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




# --- what the user confirms -----------------------------------------------------------------

_ON_DISK = ("folder", "paired", "list", "webdataset", "pdf")   # source types that read files
TRUST_FLAG = "--trust-plan-paths"


def _normal_path(spec: SourceSpec) -> str:
    from corruptor.sources.scheme import scheme_for

    try:
        return scheme_for(spec).normalize(spec.path)
    except SourceError:   # no longer on disk: compared as typed, made absolute
        return os.path.abspath(spec.path)


def confirm_sources(declared: list[dict[str, Any]], given: list[SourceSpec], file: str) -> None:
    """Every source ``declared`` in a plan that reads files must be restated in ``given`` with
    its name and path: a dataset from elsewhere cannot point a rebuild at the user's files.
    A release root restated as the build was given it stands for its pair folders."""
    from corruptor.sources.sources import expand_release_roots

    try:
        given = expand_release_roots(list(given))
    except SourceError as exc:
        raise DatasetFileError(f"--source: {exc}") from None
    restated = {spec.name: spec for spec in given}
    names = {src["name"] for src in declared}
    unknown = sorted(set(restated) - names)
    if unknown:
        raise DatasetFileError(f"--source {unknown[0]}: {file} declares no source of that name "
                               f"(its sources: {', '.join(sorted(names))})")
    for src in declared:
        if src.get("type") not in _ON_DISK:
            continue   # generated images (synthetic pages, embedded photos) read no file
        name, path = src["name"], src["path"]
        mine = restated.get(name)
        if mine is None:
            raise DatasetFileError(f"{file} reads source '{name}' from {path}; restate it with "
                                   f"--source {name}={path} (or pass {TRUST_FLAG})")
        if _normal_path(mine) != path:
            raise DatasetFileError(f"--source {name}={mine.path}: {file} records source '{name}' at {path}, "
                                   f"not there; restate that path (or pass {TRUST_FLAG})")


def confirm_mask_inputs(mask_cfg: dict[str, Any] | None, given: dict[str, Any], file: str) -> None:
    """The files a plan's mask settings read on a mask-cache miss (a SAM2 checkpoint, a
    precomputed masks file) must be named again by the user with the build's flag for each."""
    if not mask_cfg:
        return
    recorded = {"--sam2-checkpoint": (mask_cfg.get("sam2") or {}).get("checkpoint"),
                "--precomputed-masks": mask_cfg.get("precomputed_path")}
    for flag, path in recorded.items():
        if path is None:
            continue
        mine = given.get(flag)
        if mine is None or os.path.abspath(str(mine)) != os.path.abspath(str(path)):
            raise DatasetFileError(f"{file}'s mask settings read {path} on a mask-cache miss; confirm it with "
                                   f"{flag} {path} (or pass {TRUST_FLAG})")


__all__ = ["check_plan_sources", "confirm_mask_inputs", "confirm_sources", "share_mask_cache"]
