"""``pdf:FOLDER[?dpi=N&max_pages=N&max_side=N]``: every page of every PDF below FOLDER
(listing and rendering in corruptor.sources.pdf)."""
from __future__ import annotations

import os

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import ItemReadError, Locator, encode_png, register_reader
from corruptor.sources.scheme import register_scheme
from corruptor.sources.spec import PDF_PREFIX, SourceError, SourceSpec


@register_scheme("pdf")
class PdfPages:
    def claims(self, path: str) -> bool:
        return path.startswith(PDF_PREFIX)

    def normalize(self, path: str) -> str:
        folder, sep, query = path[len(PDF_PREFIX):].partition("?")   # the folder part, stored absolute
        return f"{PDF_PREFIX}{os.path.abspath(folder)}{sep}{query}" if folder else path

    def scan(self, spec: SourceSpec) -> ScannedSource:
        from corruptor.sources.pdf import PdfOptionError, scan_pdf

        try:
            entries, notes = scan_pdf(spec.path)
        except PdfOptionError as exc:
            raise SourceError(f"source '{spec.name}': {exc}") from None
        return ScannedSource(spec, [SourceItem(spec.name, ref, Locator("pdf", args)) for ref, args in entries],
                             self.name, notes)


@register_reader("pdf")
def read_pdf_page(path: str, page: int, dpi: int, max_side: int) -> bytes:
    from corruptor.sources.pdf import PdfReadError, render_page

    try:
        return encode_png(render_page(path, page, dpi, max_side))
    except PdfReadError as exc:
        raise ItemReadError(str(exc)) from None
