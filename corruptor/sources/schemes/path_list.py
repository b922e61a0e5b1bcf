"""A path list: a ``.txt``/``.lst``/``.list`` file (one path a line, ``#`` comments) or a
``.parquet`` table with a path column; relative paths are read from the list's folder."""
from __future__ import annotations

import os
from pathlib import Path

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import Locator
from corruptor.sources.scheme import OnDisk, register_scheme
from corruptor.sources.spec import SourceError, SourceSpec

LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list", ".parquet")
PATH_COLUMNS: tuple[str, ...] = ("path", "filepath", "file", "image_path")


@register_scheme("list")
class PathList(OnDisk):
    def claims(self, path: str) -> bool:
        return os.path.exists(path) and not os.path.isdir(path) and Path(path).suffix.lower() in LIST_SUFFIXES

    def scan(self, spec: SourceSpec) -> ScannedSource:
        return ScannedSource(spec, scan_list(spec, Path(spec.path)), self.name)


def list_entries(spec: SourceSpec, path: Path) -> list[str]:
    """The file names a .txt/.parquet list source holds, as written (relative ones are read from
    the list's folder)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
        if column is None:
            raise SourceError(
                f"source '{spec.name}': {path} has no path column; expected one of {', '.join(PATH_COLUMNS)} "
                f"(columns: {', '.join(table.column_names)})"
            )
        return [str(v) for v in table.column(column).to_pylist() if v]
    entries = [ln.strip() for ln in path.read_text().splitlines()]
    return [e for e in entries if e and not e.startswith("#")]


def scan_list(spec: SourceSpec, path: Path) -> list[SourceItem]:
    base = path.parent
    items, missing = [], []
    # Plain strings, not Path objects: a list of a million files spent most of its scan
    # building and parsing Path objects (35 s); os.path keeps it to the stat calls.
    base_str = str(base)
    isfile, join, isabs = os.path.isfile, os.path.join, os.path.isabs
    for entry in list_entries(spec, path):
        full = entry if isabs(entry) else join(base_str, entry)
        if "//" in full or "/." in full or full.startswith("./"):
            full = str(Path(full))  # the rare unnormalised entry: same string as before
        if not isfile(full):
            missing.append(entry)
            continue
        items.append(SourceItem(spec.name, entry, Locator("file", (full,))))
    if missing:
        raise SourceError(
            f"source '{spec.name}': {len(missing)} listed file(s) not found, e.g. {missing[0]!r} "
            f"(relative paths are read from {base})"
        )
    items.sort(key=lambda it: it.ref)
    seen, out = set(), []
    for it in items:   # a path listed twice is one item
        if it.ref not in seen:
            seen.add(it.ref)
            out.append(it)
    return out
