"""Pages of PDF documents as source items, rendered with pdfium (``pypdfium2``).

    --source NAME=pdf:PATH[?dpi=100&max_pages=20&max_side=4096][:weight]

PATH is a folder (every ``*.pdf`` below it, recursively, in sorted order) or one PDF file.
Options, all optional, after ``?`` joined by ``&``:

    dpi        render resolution in dots per inch (default 100: an A4 page is 827 x 1169 px)
    max_pages  the first N pages of each file (default: every page)
    max_side   a page whose long side would exceed this many pixels at ``dpi`` is rendered
               at the largest scale that fits (default 4096: posters and 2400-dpi scans
               would otherwise be hundreds of megapixels)

Each page is one item with the stable ref ``<file relative to PATH>#page=NNNN`` (1-based,
zero-padded so refs sort in page order). Files are listed once, at scan time, and only
their page counts are read; pages are rendered by the worker that uses them, in order,
with fixed settings, so the same file gives the same bytes in every run.

A file that cannot be used (encrypted with a user password, broken, zero pages) keeps its
place as one item ``<file>#page=0001`` whose read fails with the reason: the build writes
a failed status row for it and goes on. The scan also lists such files in the source's
notes (``dataset.json`` -> sources -> ``unusable_pdfs``).
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PDF_PREFIX = "pdf:"
DEFAULT_DPI = 100
DEFAULT_MAX_SIDE = 4096
DPI_RANGE = (18, 1200)
OPTIONS = ("dpi", "max_pages", "max_side")
_PAGE_DIGITS = 4


class PdfOptionError(ValueError):
    """A malformed ``pdf:`` source path or option."""


class PdfReadError(ValueError):
    """One PDF page that cannot be rendered. Permanent: the same file fails the same way."""


@dataclass(frozen=True)
class PdfOptions:
    path: str
    dpi: int = DEFAULT_DPI
    max_pages: int | None = None
    max_side: int = DEFAULT_MAX_SIDE


def parse_pdf_path(text: str) -> PdfOptions:
    """``pdf:PATH[?key=value&...]`` -> options; errors name the option and what is allowed."""
    if not text.startswith(PDF_PREFIX):
        raise PdfOptionError(f"expected '{PDF_PREFIX}PATH', got {text!r}")
    path, _, query = text[len(PDF_PREFIX):].partition("?")
    if not path:
        raise PdfOptionError(f"{text!r}: empty PATH after '{PDF_PREFIX}'")
    values: dict[str, int] = {}
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key not in OPTIONS:
            raise PdfOptionError(f"{text!r}: unknown option {key!r}; allowed: {', '.join(OPTIONS)}")
        try:
            values[key] = int(value)
        except ValueError:
            raise PdfOptionError(f"{text!r}: option {key} needs an integer value ({key}=N), got {part!r}") from None
    dpi = values.get("dpi", DEFAULT_DPI)
    if not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
        raise PdfOptionError(f"{text!r}: dpi must be in [{DPI_RANGE[0]}, {DPI_RANGE[1]}], got {dpi}")
    max_pages = values.get("max_pages")
    if max_pages is not None and max_pages < 1:
        raise PdfOptionError(f"{text!r}: max_pages must be >= 1, got {max_pages}")
    max_side = values.get("max_side", DEFAULT_MAX_SIDE)
    if max_side < 16:
        raise PdfOptionError(f"{text!r}: max_side must be >= 16, got {max_side}")
    return PdfOptions(path=path, dpi=dpi, max_pages=max_pages, max_side=max_side)


def _pdfium():
    try:
        import pypdfium2
    except ImportError:
        raise PdfOptionError("pdf sources need pypdfium2: pip install pypdfium2") from None
    return pypdfium2


# pdfium's load error codes (FPDF_ERR_*) -> (reason, what it means). The reason comes first
# in a status row's error, as `corruptor stats` counts it. 0: see _load_error_code.
_LOAD_ERRORS = {
    0: ("pdf_no_pages", "the document has no pages"),
    2: ("pdf_unreadable", "the file cannot be opened"),
    3: ("pdf_broken", "not a PDF, or damaged beyond repair"),
    4: ("pdf_encrypted", "encrypted: opening it needs a password"),
    5: ("pdf_encrypted", "encrypted with an unsupported security handler"),
    -1: ("pdf_error", "failed to load, then loaded: the file changed while it was read"),
}


def _load_error_code(path: str) -> int:
    """pdfium's reason for refusing ``path``. It leaves its last-error code unchanged when it
    rejects a document without a parse error (an empty page tree), so a stale code from an
    earlier file would show: set the code to two different values in turn and load again;
    when neither changes, no error was set, which means no pages."""
    pdfium = _pdfium()
    for prime in (2, 3):
        if prime == 2:
            pdfium.raw.FPDF_LoadDocument(b"/nonexistent/maa-toolkit/prime.pdf", None)  # FPDF_ERR_FILE
        else:
            try:
                pdfium.PdfDocument(b"%PDF-1.4 not a document").close()  # FPDF_ERR_FORMAT
            except pdfium.PdfiumError:
                pass
        try:
            pdfium.PdfDocument(path).close()
        except pdfium.PdfiumError as exc:
            if exc.err_code != prime:
                return exc.err_code
        else:
            return -1  # it loads now: the file changed under us
    return 0


def _open_document(path: str):
    """An open ``PdfDocument``, or ``PdfReadError`` with the reason."""
    pdfium = _pdfium()
    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError:
        code = _load_error_code(path)
    reason, text = _LOAD_ERRORS.get(code, ("pdf_error", f"pdfium cannot load it (error code {code})"))
    raise PdfReadError(f"{reason}: {os.path.basename(path)}: {text}")


def page_count(path: str) -> int:
    """Pages of one PDF; raises ``PdfReadError`` with the reason when it cannot be opened."""
    doc = _open_document(path)
    try:
        return len(doc)
    finally:
        doc.close()


def list_pdfs(root: Path) -> list[Path]:
    """Every PDF below ``root`` (or ``root`` itself), sorted by relative path; hidden files skipped."""
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        found += [Path(dirpath) / fn for fn in sorted(filenames)
                  if fn.lower().endswith(".pdf") and not fn.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def page_ref(rel: str, page: int, digits: int = _PAGE_DIGITS) -> str:
    return f"{rel}#page={page + 1:0{digits}d}"


def scan_pdf(text: str) -> tuple[list[tuple[str, tuple]], dict[str, Any]]:
    """(ref, locator args) per page in file order then page order, plus scan notes.

    Raises ``PdfOptionError`` for a bad path or options (before any work)."""
    opts = parse_pdf_path(text)
    root = Path(opts.path)
    if not root.exists():
        raise PdfOptionError(f"path {opts.path} does not exist")
    if root.is_file() and root.suffix.lower() != ".pdf":
        raise PdfOptionError(f"{opts.path} is not a .pdf file or a folder")
    files = list_pdfs(root)
    entries: list[tuple[str, tuple]] = []
    unusable: list[dict[str, str]] = []
    pages_total = 0
    for path in files:
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        full = str(path.resolve())
        try:
            n = page_count(full)
            if n == 0:
                raise PdfReadError(f"pdf_no_pages: {path.name}: the document has no pages")
        except PdfReadError as exc:
            unusable.append({"file": rel, "reason": str(exc)})
            entries.append((page_ref(rel, 0), (full, 0, opts.dpi, opts.max_side)))
            continue
        pages_total += n
        use = n if opts.max_pages is None else min(n, opts.max_pages)
        digits = max(_PAGE_DIGITS, len(str(n)))
        entries += [(page_ref(rel, i, digits), (full, i, opts.dpi, opts.max_side)) for i in range(use)]
    notes = {"pdf_files": len(files), "pdf_pages": pages_total, "dpi": opts.dpi, "max_pages": opts.max_pages,
             "max_side": opts.max_side, "unusable_pdfs": unusable}
    return entries, notes


_OPEN: dict[tuple[str, int, int], Any] = {}
_OPEN_MAX = 2
_exit_hook = False


def _open(path: str, size: int, mtime_ns: int):
    """A worker keeps the last documents open for the next pages of the same file; the key
    includes size and mtime so a file replaced during a long build is opened afresh."""
    global _exit_hook
    key = (path, size, mtime_ns)
    doc = _OPEN.pop(key, None)
    if doc is None:
        doc = _open_document(path)
        if not _exit_hook:
            atexit.register(close_documents)  # runs before pypdfium2's own exit hook, which warns
            _exit_hook = True
    _OPEN[key] = doc  # most recent last
    while len(_OPEN) > _OPEN_MAX:
        _OPEN.pop(next(iter(_OPEN))).close()
    return doc



def close_documents() -> None:
    """Close the documents kept open by ``render_page``."""
    while _OPEN:
        _OPEN.popitem()[1].close()


def render_page(path: str, page: int, dpi: int = DEFAULT_DPI, max_side: int = DEFAULT_MAX_SIDE):
    """One page as a uint8 RGB array [H, W, 3] on white, annotations and form fields drawn."""
    pdfium = _pdfium()
    name = os.path.basename(path)
    st = os.stat(path)  # a file gone since the scan is an I/O error, as for image files
    doc = _open(path, st.st_size, st.st_mtime_ns)
    if len(doc) == 0:
        raise PdfReadError(f"pdf_no_pages: {name}: the document has no pages")
    if not 0 <= page < len(doc):
        raise PdfReadError(f"pdf_no_page: {name}: page {page + 1} does not exist (the file has {len(doc)} pages)")
    import numpy as np

    pdf_page = None
    try:
        pdf_page = doc[page]
        width, height = pdf_page.get_size()   # points, page rotation applied
        scale = dpi / 72.0
        longest = max(width, height) * scale
        if longest > max_side:
            scale *= max_side / longest
        if min(width, height) * scale < 1:
            raise PdfReadError(f"pdf_page_too_small: {name}: page {page + 1} is {width:.1f} x {height:.1f} pt, "
                               "under one pixel at this scale")
        bitmap = pdf_page.render(scale=scale, fill_color=(255, 255, 255, 255))
        try:
            return np.ascontiguousarray(np.asarray(bitmap.to_pil().convert("RGB")))
        finally:
            bitmap.close()
    except pdfium.PdfiumError as exc:
        raise PdfReadError(f"pdf_page_error: {name}: page {page + 1}: {exc}") from None
    finally:
        if pdf_page is not None:
            pdf_page.close()
