"""``embedded:photos``: the sample photos shipped inside scikit-image (corruptor.sources.samples)."""
from __future__ import annotations

from corruptor.sources.item import ScannedSource, SourceItem
from corruptor.sources.locator import Locator, encode_png, register_reader
from corruptor.sources.scheme import register_scheme
from corruptor.sources.spec import EMBEDDED_PHOTOS, SourceSpec


@register_scheme("embedded")
class Embedded:
    def claims(self, path: str) -> bool:
        return path == EMBEDDED_PHOTOS

    def normalize(self, path: str) -> str:
        return path

    def scan(self, spec: SourceSpec) -> ScannedSource:
        from corruptor.sources.samples import SAMPLE_PHOTOS

        items = [SourceItem(spec.name, f"embedded/{n}", Locator("embedded", (n,))) for n in sorted(SAMPLE_PHOTOS)]
        return ScannedSource(spec, items, self.name)


@register_reader("embedded")
def read_embedded(name: str) -> bytes:
    from corruptor.sources.samples import sample_photo

    return encode_png(sample_photo(name))
