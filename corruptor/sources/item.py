"""Source items: one image of a source (or a clean/degraded pair) and a scanned source's list of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corruptor.sources.locator import Locator
from corruptor.sources.spec import SourceSpec


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
