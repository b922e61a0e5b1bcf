"""WebDataset tars: ``shards.tar`` or a glob (``shards/*.tar``); the first image member of each
sample, read by offset. A link, device or FIFO member gets a row that says so, never read."""
from __future__ import annotations

import glob
import os
import tarfile

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import Locator
from corruptor.sources.scheme import OnDisk, register_scheme
from corruptor.sources.schemes.folder import is_image
from corruptor.sources.spec import SourceError, SourceSpec


@register_scheme("webdataset")
class WebDataset(OnDisk):
    def claims(self, path: str) -> bool:
        return path.endswith(".tar") or any(c in path for c in "*?[")

    def scan(self, spec: SourceSpec) -> ScannedSource:
        return ScannedSource(spec, scan_tars(spec, spec.path), self.name)


def scan_tars(spec: SourceSpec, pattern: str) -> list[SourceItem]:
    paths = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
        raise SourceError(f"source '{spec.name}': no tar files match {pattern!r}")
    items = []
    for tar_path in paths:
        try:
            items += _members(spec, tar_path)
        except tarfile.TarError as exc:
            raise SourceError(f"source '{spec.name}': cannot read tar {tar_path}: {exc}") from None
    items.sort(key=lambda it: it.ref)
    return items


def _members(spec: SourceSpec, tar_path: str) -> list[SourceItem]:
    items, seen = [], set()
    with tarfile.open(tar_path, "r:") as tf:
        for member in tf:
            if not is_image(member.name) or member.isdir():
                continue
            # webdataset groups members by the part of the basename before the first dot
            dirname, base = os.path.split(member.name)
            sample_key = os.path.join(dirname, base.split(".", 1)[0])
            if sample_key in seen:
                continue  # first image member of a sample only
            seen.add(sample_key)
            ref = f"{os.path.basename(tar_path)}/{member.name}"
            if member.isfile():
                locator = Locator("tar", (os.path.abspath(tar_path), member.offset_data, member.size))
            else:   # a link, device or FIFO member: a row that says so, never a silent drop
                locator = Locator("refused", (f"tar member is {_member_type(member)}, not read",))
            items.append(SourceItem(spec.name, ref, locator))
    return items


def _member_type(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "not a regular file"
