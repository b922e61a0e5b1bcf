"""``synthetic:ocr[:count]``: OCR-heavy pages rendered on the fly (corruptor.sources.ocr_pages).

A page is a function of its index only, so the same page has the same sha256 (and mask
cache entry) in every dataset that uses it.
"""
from __future__ import annotations

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import Locator, encode_png, register_reader
from corruptor.sources.scheme import register_scheme
from corruptor.sources.spec import SYNTHETIC_PREFIX, SourceError, SourceSpec

DEFAULT_SYNTHETIC_COUNT = 64
SYNTHETIC_SEED = 20240611


@register_scheme("synthetic")
class Synthetic:
    def claims(self, path: str) -> bool:
        return path.startswith(SYNTHETIC_PREFIX)

    def normalize(self, path: str) -> str:
        return path

    def scan(self, spec: SourceSpec) -> ScannedSource:
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
        items = [SourceItem(spec.name, f"synthetic/{kind}/{i:06d}", Locator("synthetic", (kind, i, 512, 512)))
                 for i in range(count)]
        return ScannedSource(spec, items, self.name)


@register_reader("synthetic")
def read_synthetic(kind: str, index: int, width: int, height: int) -> bytes:
    from corruptor.sources.ocr_pages import OCR_KINDS, render_page
    from maa_format.rng import rng_for

    page_kind = None if kind == "ocr" else kind
    if page_kind is None:
        page_kind = OCR_KINDS[index % len(OCR_KINDS)]
    rng = rng_for(SYNTHETIC_SEED, f"synthetic-{kind}", str(index))
    return encode_png(render_page(rng, size=(width, height), kind=page_kind))
