"""Where source images come from: a named, weighted source and the items it yields.

A source is scanned once, up front, into a sorted list of ``SourceItem``s. Each item
carries a small picklable locator (a file, a member of a tar, a synthetic page, an
embedded photo) rather than open handles, so plans can be written to disk, shipped to
worker processes or Ray tasks, and re-read by ``rebuild`` without rescanning anything.
Every locator yields encoded image *bytes*: the worker hashes exactly what it decodes.
"""
from __future__ import annotations

import glob
import io
import os
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS: tuple[str, ...] = ("photo", "web", "ocr")
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
)
EMBEDDED_PHOTOS = "embedded:photos"
SYNTHETIC_PREFIX = "synthetic:"
PDF_PREFIX = "pdf:"  # pages of PDF documents, see corruptor.sources.pdf
DEFAULT_SYNTHETIC_COUNT = 64
# Synthetic pages are a function of their index only, so the same page has the same
# sha256 (and mask cache entry) in every dataset that uses it.
SYNTHETIC_SEED = 20240611
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")
_VERSION_RE = re.compile(r"^(?P<stem>.+)_v(?P<n>[0-9]+)$")


class SourceError(ValueError):
    """A source that cannot be used: raised before any work starts."""


class ItemReadError(ValueError):
    """One item whose image cannot be made, for good (e.g. a PDF page that does not render):
    recorded as that sample's failed status row, the build goes on."""


@dataclass(frozen=True)
class SourceSpec:
    name: str
    path: str
    kind: str = "photo"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise SourceError(
                f"source name '{self.name}': use letters, digits, '_' and single '-' only "
                "(it becomes part of every sample key)"
            )
        if self.kind not in KINDS:
            raise SourceError(f"source '{self.name}': kind '{self.kind}' not allowed; allowed: {', '.join(KINDS)}")
        if not (self.weight > 0):
            raise SourceError(f"source '{self.name}': weight must be > 0, got {self.weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


# --- locators: how one item's bytes are read ------------------------------------------


@dataclass(frozen=True)
class Locator:
    """Reads one encoded image. ``type`` selects the reader; ``args`` are JSON-safe."""

    type: str
    args: tuple = ()

    def read(self) -> bytes:
        return _READERS[self.type](*self.args)

    def to_list(self) -> list:
        return [self.type, *self.args]

    @staticmethod
    def from_list(value: list) -> "Locator":
        return Locator(value[0], tuple(value[1:]))


def _read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _read_tar_member(path: str, offset: int, size: int) -> bytes:
    # Offsets are recorded at scan time, so reading a member needs no archive walk.
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"{path}: member at offset {offset} is truncated ({len(data)} of {size} bytes)")
    return data


def _encode_png(image) -> bytes:
    from PIL import Image

    # Generated images exist as bytes only to be hashed and decoded again by the worker:
    # the fastest lossless level is enough.
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _read_synthetic(kind: str, index: int, width: int, height: int) -> bytes:
    from corruptor.sources.ocr_pages import OCR_KINDS, render_page
    from maa_format.rng import rng_for

    page_kind = None if kind == "ocr" else kind
    if page_kind is None:
        page_kind = OCR_KINDS[index % len(OCR_KINDS)]
    rng = rng_for(SYNTHETIC_SEED, f"synthetic-{kind}", str(index))
    return _encode_png(render_page(rng, size=(width, height), kind=page_kind))


def _read_embedded(name: str) -> bytes:
    from corruptor.sources.samples import sample_photo

    return _encode_png(sample_photo(name))


def _read_pdf_page(path: str, page: int, dpi: int, max_side: int) -> bytes:
    from corruptor.sources.pdf import PdfReadError, render_page

    try:
        return _encode_png(render_page(path, page, dpi, max_side))
    except PdfReadError as exc:
        raise ItemReadError(str(exc)) from None


_READERS = {
    "file": _read_file,
    "tar": _read_tar_member,
    "synthetic": _read_synthetic,
    "embedded": _read_embedded,
    "pdf": _read_pdf_page,
}


@dataclass(frozen=True)
class SourceItem:
    """One source image. ``ref`` is its stable id (a path, or a tar member, or a page id).

    Paired items (the MAA released layout) also carry the given degraded image and its
    version number (1 for ``x``, 2 for ``x_v2``, ...).
    """

    source: str
    ref: str
    locator: Locator
    dis_ref: str | None = None
    dis_locator: Locator | None = None
    version: int = 0
    meta: dict[str, Any] | None = None  # the release's metadata.jsonl record of this pair

    @property
    def paired(self) -> bool:
        return self.dis_locator is not None

    def read(self) -> bytes:
        return self.locator.read()

    def read_dis(self) -> bytes:
        if self.dis_locator is None:
            raise ValueError(f"{self.source}:{self.ref} is not a paired item")
        return self.dis_locator.read()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "ref": self.ref, "locator": self.locator.to_list()}
        if self.dis_locator is not None:
            d.update(dis_ref=self.dis_ref, dis_locator=self.dis_locator.to_list(), version=self.version)
        if self.meta is not None:
            d["meta"] = self.meta
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "SourceItem":
        dis = d.get("dis_locator")
        return SourceItem(
            source=d["source"], ref=d["ref"], locator=Locator.from_list(d["locator"]),
            dis_ref=d.get("dis_ref"), dis_locator=Locator.from_list(dis) if dis else None,
            version=int(d.get("version", 0)), meta=d.get("meta"),
        )


@dataclass
class ScannedSource:
    spec: SourceSpec
    items: list[SourceItem]
    source_type: str
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "type": self.source_type, "items": len(self.items), **self.notes}


# --- scanning ----------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _scan_folder(spec: SourceSpec, root: Path) -> list[SourceItem]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for fn in sorted(filenames):
            if _is_image(fn) and not fn.startswith("."):
                full = Path(dirpath) / fn
                items.append(SourceItem(spec.name, full.relative_to(root).as_posix(), Locator("file", (str(full),))))
    items.sort(key=lambda it: it.ref)
    return items


def list_entries(spec: SourceSpec, path: Path) -> list[str]:
    """The file names a .txt/.parquet list source holds, as written (relative ones are read from
    the list's folder)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        column = next((c for c in ("path", "filepath", "file", "image_path") if c in table.column_names), None)
        if column is None:
            raise SourceError(
                f"source '{spec.name}': {path} has no path column; expected one of path, filepath, file, image_path "
                f"(columns: {', '.join(table.column_names)})"
            )
        entries = [str(v) for v in table.column(column).to_pylist() if v]
    else:
        entries = [ln.strip() for ln in path.read_text().splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    return entries


def _scan_list(spec: SourceSpec, path: Path) -> list[SourceItem]:
    base = path.parent
    entries = list_entries(spec, path)
    items, missing = [], []
    for entry in entries:
        full = Path(entry) if os.path.isabs(entry) else base / entry
        if not full.is_file():
            missing.append(entry)
            continue
        items.append(SourceItem(spec.name, entry, Locator("file", (str(full),))))
    if missing:
        raise SourceError(
            f"source '{spec.name}': {len(missing)} listed file(s) not found, e.g. {missing[0]!r} "
            f"(relative paths are read from {base})"
        )
    items.sort(key=lambda it: it.ref)
    return _dedupe(spec, items)


def _scan_tars(spec: SourceSpec, pattern: str) -> list[SourceItem]:
    paths = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    paths = [p for p in paths if os.path.isfile(p)]
    if not paths:
        raise SourceError(f"source '{spec.name}': no tar files match {pattern!r}")
    items = []
    for tar_path in paths:
        seen: set[str] = set()
        try:
            with tarfile.open(tar_path, "r:") as tf:
                for member in tf:
                    if not member.isfile() or not _is_image(member.name):
                        continue
                    # webdataset groups members by the part of the basename before the first dot
                    dirname, base = os.path.split(member.name)
                    sample_key = os.path.join(dirname, base.split(".", 1)[0])
                    if sample_key in seen:
                        continue  # first image member of a sample only
                    seen.add(sample_key)
                    ref = f"{os.path.basename(tar_path)}/{member.name}"
                    items.append(SourceItem(
                        spec.name, ref, Locator("tar", (os.path.abspath(tar_path), member.offset_data, member.size)),
                    ))
        except tarfile.TarError as exc:
            raise SourceError(f"source '{spec.name}': cannot read tar {tar_path}: {exc}") from None
    items.sort(key=lambda it: it.ref)
    return items


def _scan_paired(spec: SourceSpec, root: Path) -> tuple[list[SourceItem], dict[str, Any]]:
    from corruptor.sources.release_layout import read_metadata

    try:
        metadata, records = read_metadata(root)
    except (ValueError, OSError) as exc:
        raise SourceError(f"source '{spec.name}': {exc}") from None
    refs = {Path(r.ref).with_suffix("").as_posix(): r for r in _scan_folder(spec, root / "ref")}
    items, orphans, used = [], [], set()
    for dis in _scan_folder(spec, root / "dis"):
        stem = Path(dis.ref).with_suffix("").as_posix()
        version = 1
        match = _VERSION_RE.match(stem)
        if stem not in refs and match and match["stem"] in refs:
            stem, version = match["stem"], int(match["n"])
        ref = refs.get(stem)
        if ref is None:
            orphans.append(dis.ref)
            continue
        used.add(stem)
        meta = metadata.get(Path(dis.ref).name) or metadata.get(Path(ref.ref).name)
        items.append(SourceItem(
            spec.name, f"ref/{ref.ref}", ref.locator, dis_ref=f"dis/{dis.ref}", dis_locator=dis.locator, version=version,
            meta=meta,
        ))
    if orphans:
        raise SourceError(
            f"source '{spec.name}': {len(orphans)} file(s) in {root / 'dis'} have no reference in {root / 'ref'} "
            f"with the same stem (or stem_vN), e.g. {orphans[0]!r}"
        )
    items.sort(key=lambda it: (it.ref, it.version, it.dis_ref))
    notes: dict[str, Any] = {"unpaired_refs": len(refs) - len(used)}
    if records:
        notes.update(metadata_records=records, pairs_with_metadata=sum(it.meta is not None for it in items))
    return items, notes


def _scan_synthetic(spec: SourceSpec) -> list[SourceItem]:
    parts = spec.path.split(":")
    kind = parts[1] if len(parts) > 1 else ""
    if kind != "ocr":
        raise SourceError(f"source '{spec.name}': unknown synthetic generator '{kind}'; allowed: ocr")
    count = DEFAULT_SYNTHETIC_COUNT
    if len(parts) > 2:
        try:
            count = int(parts[2])
        except ValueError:
            raise SourceError(f"source '{spec.name}': synthetic count '{parts[2]}' is not an integer") from None
    if count < 1:
        raise SourceError(f"source '{spec.name}': synthetic count must be >= 1, got {count}")
    return [
        SourceItem(spec.name, f"synthetic/{kind}/{i:06d}", Locator("synthetic", (kind, i, 512, 512)))
        for i in range(count)
    ]


def _scan_embedded(spec: SourceSpec) -> list[SourceItem]:
    from corruptor.sources.samples import SAMPLE_PHOTOS

    return [SourceItem(spec.name, f"embedded/{n}", Locator("embedded", (n,))) for n in sorted(SAMPLE_PHOTOS)]


def _scan_pdf(spec: SourceSpec) -> tuple[list[SourceItem], dict[str, Any]]:
    from corruptor.sources.pdf import PdfOptionError, scan_pdf

    try:
        entries, notes = scan_pdf(spec.path)
    except PdfOptionError as exc:
        raise SourceError(f"source '{spec.name}': {exc}") from None
    return [SourceItem(spec.name, ref, Locator("pdf", args)) for ref, args in entries], notes


def _dedupe(spec: SourceSpec, items: list[SourceItem]) -> list[SourceItem]:
    seen, out = set(), []
    for it in items:
        if it.ref not in seen:
            seen.add(it.ref)
            out.append(it)
    return out


def scan_source(spec: SourceSpec) -> ScannedSource:
    """List a source's items (sorted, deterministic). Raises ``SourceError`` if missing or empty."""
    path = spec.path
    notes: dict[str, Any] = {}
    if path.startswith(SYNTHETIC_PREFIX):
        items, stype = _scan_synthetic(spec), "synthetic"
    elif path.startswith(PDF_PREFIX):
        (items, notes), stype = _scan_pdf(spec), "pdf"
    elif path == EMBEDDED_PHOTOS:
        items, stype = _scan_embedded(spec), "embedded"
    elif path.endswith(".tar") or any(c in path for c in "*?["):
        items, stype = _scan_tars(spec, path), "webdataset"
    else:
        p = Path(path)
        if not p.exists():
            raise SourceError(f"source '{spec.name}': path {path} does not exist")
        if p.is_dir() and (p / "ref").is_dir() and (p / "dis").is_dir():
            (items, notes), stype = _scan_paired(spec, p), "paired"
        elif p.is_dir():
            items, stype = _scan_folder(spec, p), "folder"
            if not items and any(p.glob("*.tar")):
                # An img2dataset output folder: its images live inside the shards.
                items, stype = _scan_tars(spec, str(p / "*.tar")), "webdataset"
        elif p.suffix.lower() in (".txt", ".lst", ".list", ".parquet"):
            items, stype = _scan_list(spec, p), "list"
        else:
            raise SourceError(
                f"source '{spec.name}': {path} is not a folder, a .txt/.parquet list, a .tar shard, "
                f"'{EMBEDDED_PHOTOS}', 'synthetic:ocr[:count]' or 'pdf:FOLDER'"
            )
    if not items:
        raise SourceError(f"source '{spec.name}': no images found in {path} ({stype} source)")
    return ScannedSource(spec, items, stype, notes)


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
        loose = loose_images(root, paired, _is_image)
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


def demo_sources(ocr_pages: int = 16) -> list[SourceSpec]:
    """The embedded demo: scikit-image's photos plus synthetic OCR-heavy pages."""
    return [
        SourceSpec("photos", EMBEDDED_PHOTOS, kind="photo", weight=1.0),
        SourceSpec("ocr", f"synthetic:ocr:{ocr_pages}", kind="ocr", weight=1.0),
    ]
