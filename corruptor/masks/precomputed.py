"""Masks the user brings: COCO RLE in a Parquet table or a JSON list.

Parquet: one row per mask; an image column (``sha256``, ``path``, ``key`` or ``image``),
the RLE as ``counts`` (compressed string) with ``size`` ([h, w]) or ``h`` and ``w``, and an
optional ``score``. JSON: a list of ``{"sha256" | "path" | "key" | "image": ...,
"segmentation": {"size": [h, w], "counts": ...}, "score": optional}``.
Images are looked up by each of their names in turn (sha256 first, then path forms).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from corruptor.masks import rle
from corruptor.masks.registry import register_mask_source
from corruptor.masks.source import (
    FALLBACK_HINT,
    MaskError,
    MaskMissing,
    MaskOutcome,
    MaskSourceConfig,
    MaskSourceError,
    check_image,
    select_masks,
)

IMAGE_COLUMNS: tuple[str, ...] = ("sha256", "path", "key", "image")


def _read_rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".json":
        doc = json.loads(path.read_text())
        if not isinstance(doc, list):
            raise ValueError("top level must be a list of mask records")
        rows = []
        for i, rec in enumerate(doc):
            if not isinstance(rec, dict) or "segmentation" not in rec:
                raise ValueError(f"record {i} has no 'segmentation'")
            rows.append({**{k: rec[k] for k in IMAGE_COLUMNS if k in rec}, "rle": rec["segmentation"],
                         "score": rec.get("score", 1.0)})
        return rows
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pylist()
    rows = []
    for i, rec in enumerate(table):
        if "counts" not in rec:
            raise ValueError(f"row {i} has no 'counts' column")
        size = rec.get("size") or [rec.get("h"), rec.get("w")]
        if size is None or None in size:
            raise ValueError(f"row {i} needs 'size' or 'h' and 'w'")
        rows.append({**{k: rec[k] for k in IMAGE_COLUMNS if rec.get(k) is not None},
                     "rle": {"size": [int(size[0]), int(size[1])], "counts": rec["counts"]},
                     "score": rec.get("score") if rec.get("score") is not None else 1.0})
    return rows


def load_index(path: Path) -> dict[str, list[tuple[dict, float]]]:
    """Every name an image is filed under -> its RLEs and scores."""
    try:
        rows = _read_rows(Path(path))
    except Exception as exc:  # any parse failure means the file cannot be used
        raise MaskSourceError(f"cannot read precomputed mask file '{path}': {exc}") from exc
    index: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for row in rows:
        names = [str(row[k]) for k in IMAGE_COLUMNS if k in row]
        if not names:
            raise MaskSourceError(f"precomputed mask file '{path}': a record names no image ({', '.join(IMAGE_COLUMNS)})")
        for name in dict.fromkeys(names):
            index[name].append((row["rle"], float(row["score"])))
    return dict(index)


def check_precomputed(cfg: MaskSourceConfig) -> None:
    fallbacks = FALLBACK_HINT
    p = cfg.precomputed_path
    if p is None:
        raise MaskSourceError(f"mask source 'precomputed' needs precomputed_path; or {fallbacks}")
    if not Path(p).is_file() or not os.access(p, os.R_OK):
        raise MaskSourceError(f"precomputed mask file '{p}' does not exist or is not readable; {fallbacks}")
    if Path(p).suffix.lower() not in (".parquet", ".json"):
        raise MaskSourceError(f"precomputed mask file '{p}' must end in .parquet or .json")


@register_mask_source("precomputed", check=check_precomputed)
class PrecomputedMaskSource:
    name = "precomputed"

    def __init__(self, cfg: MaskSourceConfig):
        self.config = cfg
        self.index = load_index(Path(cfg.precomputed_path))

    def generate(self, images: list[np.ndarray], keys: Sequence[Sequence[str]] | None = None) -> list[MaskOutcome]:
        if keys is None or len(keys) != len(images):
            raise ValueError("the precomputed mask source needs one list of names (sha256, path) per image")
        out: list[MaskOutcome] = []
        for image, names in zip(images, keys):
            problem = check_image(self.config, image)
            if problem is not None:
                out.append(problem)
                continue
            entry = next((self.index[n] for n in names if n in self.index), None)
            if entry is None:
                out.append(MaskMissing(f"no precomputed masks for {list(names)[:2]} in {self.config.precomputed_path}"))
                continue
            h, w = image.shape[:2]
            try:
                masks = [rle.decode(r) for r, _ in entry]
            except (ValueError, KeyError, TypeError) as exc:
                out.append(MaskError(f"bad RLE in {self.config.precomputed_path}: {exc}"))
                continue
            wrong = [m.shape for m in masks if m.shape != (h, w)]
            if wrong:
                out.append(MaskError(f"precomputed masks are {wrong[0]} but the image is {h}x{w}"))
                continue
            out.append(select_masks(self.config, masks, [s for _, s in entry]))
        return out
