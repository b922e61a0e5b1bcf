"""The MAA release's pair layout: a folder with ``ref/`` and ``dis/``, matched by file stem
(``x`` and ``x_v2``, ``x_v3``... for extra degraded versions), with an optional
``metadata.jsonl`` (corruptor.sources.release_layout)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.scheme import OnDisk, register_scheme
from corruptor.sources.schemes.folder import scan_folder
from corruptor.sources.spec import SourceError, SourceSpec

_VERSION_RE = re.compile(r"^(?P<stem>.+)_v(?P<n>[0-9]+)$")


@register_scheme("paired")
class Paired(OnDisk):
    def claims(self, path: str) -> bool:
        return os.path.isdir(os.path.join(path, "ref")) and os.path.isdir(os.path.join(path, "dis"))

    def scan(self, spec: SourceSpec) -> ScannedSource:
        from corruptor.sources.release_layout import read_metadata

        root = Path(spec.path)
        try:
            metadata, records = read_metadata(root)
        except (ValueError, OSError) as exc:
            raise SourceError(f"source '{spec.name}': {exc}") from None
        refs = {Path(r.ref).with_suffix("").as_posix(): r for r in scan_folder(spec, root / "ref")}
        items, orphans, used = [], [], set()
        for dis in scan_folder(spec, root / "dis"):
            stem, version = _reference_stem(Path(dis.ref).with_suffix("").as_posix(), refs)
            ref = refs.get(stem)
            if ref is None:
                orphans.append(dis.ref)
                continue
            used.add(stem)
            meta = metadata.get(Path(dis.ref).name) or metadata.get(Path(ref.ref).name)
            items.append(SourceItem(spec.name, f"ref/{ref.ref}", ref.locator, dis_ref=f"dis/{dis.ref}",
                                    dis_locator=dis.locator, version=version, meta=meta))
        if orphans:
            raise SourceError(
                f"source '{spec.name}': {len(orphans)} file(s) in {root / 'dis'} have no reference in "
                f"{root / 'ref'} with the same stem (or stem_vN), e.g. {orphans[0]!r}"
            )
        items.sort(key=lambda it: (it.ref, it.version, it.dis_ref))
        notes: dict[str, Any] = {"unpaired_refs": len(refs) - len(used)}
        if records:
            notes.update(metadata_records=records, pairs_with_metadata=sum(it.meta is not None for it in items))
        return ScannedSource(spec, items, self.name, notes)


def _reference_stem(stem: str, refs: dict) -> tuple[str, int]:
    """(the reference's stem, version): ``x`` -> (x, 1); ``x_v2`` -> (x, 2) when only ``x`` exists."""
    match = _VERSION_RE.match(stem)
    if stem not in refs and match and match["stem"] in refs:
        return match["stem"], int(match["n"])
    return stem, 1
