"""Where source images come from: scan named, weighted sources into sorted item lists.

A source is scanned once, up front, into a sorted list of ``SourceItem``s by the scheme its
path's form picks (corruptor.sources.scheme; one module per scheme in
corruptor.sources.schemes). Each item carries a small picklable `Locator` rather than open
handles (corruptor.sources.locator). This module is the one to import: it scans, expands
the release's dataset root into its pair folders, and re-exports the names callers use.
"""
from __future__ import annotations

from pathlib import Path

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import ItemReadError, Locator, NotRegularFile
from corruptor.sources.scheme import scheme_for
from corruptor.sources.schemes.folder import IMAGE_EXTENSIONS, is_image
from corruptor.sources.schemes.path_list import list_entries
from corruptor.sources.spec import (EMBEDDED_PHOTOS, KINDS, PDF_PREFIX, SYNTHETIC_PREFIX, SourceError, SourceSpec,
                                    demo_sources, infer_kind, parse_kind_arg, parse_source_arg)

__all__ = ["EMBEDDED_PHOTOS", "IMAGE_EXTENSIONS", "KINDS", "PDF_PREFIX", "SYNTHETIC_PREFIX", "ItemReadError",
           "Locator", "NotRegularFile", "ScannedSource", "SourceError", "SourceItem", "SourceSpec", "demo_sources",
           "expand_release_roots", "infer_kind", "list_entries", "parse_kind_arg", "parse_source_arg",
           "scan_source", "scan_sources"]


def scan_source(spec: SourceSpec) -> ScannedSource:
    """List a source's items (sorted, deterministic). Raises ``SourceError`` if missing or empty."""
    scheme = scheme_for(spec)
    spec = spec.model_copy(update={"path": scheme.normalize(spec.path)})
    scanned = scheme.scan(spec)
    if not scanned.items:
        raise SourceError(f"source '{spec.name}': no images found in {spec.path} ({scanned.source_type} source)")
    return scanned


def expand_release_roots(specs: list[SourceSpec]) -> list[SourceSpec]:
    """A folder that is not itself paired but holds paired folders (the release's
    `maa-datasets/` root) becomes one paired source per such folder, named after it."""
    from corruptor.sources.release_layout import find_paired_folders, is_paired_folder, loose_images, source_name

    out = []
    for spec in specs:
        root = Path(spec.path)
        special = spec.path.startswith(SYNTHETIC_PREFIX) or spec.path == EMBEDDED_PHOTOS
        if special or not root.is_dir() or is_paired_folder(root):
            out.append(spec)
            continue
        paired = find_paired_folders(root)
        if not paired:
            out.append(spec)
            continue
        loose = loose_images(root, paired, is_image)
        if loose:
            raise SourceError(
                f"source '{spec.name}': {root} holds paired folders ({', '.join(p.name for p in paired[:4])}) and "
                f"{len(loose)} image(s) outside them (e.g. {loose[0]!r}); give those as a separate --source")
        out += [SourceSpec(source_name(root, p), str(p), kind=spec.kind, weight=spec.weight) for p in paired]
    return out


def scan_sources(specs: list[SourceSpec]) -> list[ScannedSource]:
    """Scan every source, sorted by name; duplicate names are an error."""
    specs = expand_release_roots(specs)
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(f"source name(s) used twice: {', '.join(dup)}")
    if not specs:
        raise SourceError("no sources given; pass --source NAME=PATH (or --demo)")
    return [scan_source(s) for s in sorted(specs, key=lambda s: s.name)]
