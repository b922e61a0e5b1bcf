"""A folder: every image file below it (links followed, each real folder once), sorted by
relative path. A folder that holds no images but ``.tar`` shards (an img2dataset output) is
read as those shards."""
from __future__ import annotations

import os
from pathlib import Path

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import Locator
from corruptor.sources.scheme import OnDisk, register_scheme
from corruptor.sources.spec import SourceSpec

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@register_scheme("folder")
class Folder(OnDisk):
    def claims(self, path: str) -> bool:
        return os.path.isdir(path)

    def scan(self, spec: SourceSpec) -> ScannedSource:
        root = Path(spec.path)
        items = scan_folder(spec, root)
        if not items and any(root.glob("*.tar")):
            from corruptor.sources.schemes.webdataset import scan_tars

            return ScannedSource(spec, scan_tars(spec, str(root / "*.tar")), "webdataset")
        return ScannedSource(spec, items, self.name)


def scan_folder(spec: SourceSpec, root: Path) -> list[SourceItem]:
    items = []
    # Linked folders are followed, but each real folder once: a link back to an ancestor
    # (a loop) or two links to one folder would otherwise repeat its images.
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for fn in sorted(filenames):
            if is_image(fn) and not fn.startswith("."):
                full = Path(dirpath) / fn
                items.append(SourceItem(spec.name, full.relative_to(root).as_posix(), Locator("file", (str(full),))))
    items.sort(key=lambda it: it.ref)
    return items
