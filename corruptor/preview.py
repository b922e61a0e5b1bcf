"""Contact sheets: a labelled grid of thumbnails to eyeball ops and recipes.

Op sheet: one row per op, columns clean + severities 1..5. Recipe sheet: one row per
recipe sample, columns clean, degraded (and the region mask for local recipes), the
row label listing the ops that were applied. Rows cycle through the given images.
"""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from corruptor.api import corrupt
from corruptor.recipe.recipe import Applied, Recipe
from corruptor.ops.registry import LEVELS

LABEL_W = 220
HEADER_H = 22
PAD = 2
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def _show(image: np.ndarray, cell: int) -> np.ndarray:
    if image.shape[0] == cell:
        return image
    return np.asarray(Image.fromarray(image).resize((cell, cell), Image.Resampling.BOX))


def thumbnail(image: np.ndarray, cell: int) -> np.ndarray:
    """Centre square crop resized to ``cell`` x ``cell``."""
    h, w = image.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[y:y + side, x:x + side])
    return np.asarray(crop.resize((cell, cell), Image.Resampling.LANCZOS))


def sheet_size(rows: int, cols: int, cell: int) -> tuple[int, int]:
    """(width, height) in pixels of a sheet with this grid."""
    return LABEL_W + cols * (cell + PAD) + PAD, HEADER_H + rows * (cell + PAD) + PAD


def grid(cells: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str],
         col_labels: Sequence[str], cell: int) -> Image.Image:
    cols = len(col_labels)
    sheet = Image.new("RGB", sheet_size(len(cells), cols, cell), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, label in enumerate(col_labels):
        draw.text((LABEL_W + PAD + c * (cell + PAD) + 4, 5), label, fill=INK, font=font)
    chars = max(8, (LABEL_W - 8) // 6)
    for r, (row, label) in enumerate(zip(cells, row_labels)):
        top = HEADER_H + PAD + r * (cell + PAD)
        lines = textwrap.wrap(label, chars) or [""]
        draw.multiline_text((4, top + 2), "\n".join(lines[: max(1, cell // 12)]), fill=INK, font=font)
        for c, img in enumerate(row):
            sheet.paste(Image.fromarray(img), (LABEL_W + PAD + c * (cell + PAD), top))
    return sheet


def op_sheet(images: Sequence[np.ndarray], ops: Sequence[str], *, seed: int = 0, cell: int = 160,
             backend: str = "native", work: int | None = None) -> Image.Image:
    work = work or cell
    squares = [thumbnail(im, work) for im in images]
    rows = []
    for i, name in enumerate(ops):
        clean = squares[i % len(squares)]
        row = [clean] + [corrupt(clean, name, level, seed=seed, key=f"preview-{i}", backend=backend)
                         for level in LEVELS]
        rows.append([_show(im, cell) for im in row])
    return grid(rows, list(ops), ["clean"] + [f"severity {lv}" for lv in LEVELS], cell)


def applied_label(applied: Applied) -> str:
    parts = [f"{r['op']}@{r['severity']}" for r in applied.ops]
    parts += [f"[region] {o['op']}@{o['severity']}" for reg in applied.regions for o in reg["ops"]]
    if applied.status != "ok":
        parts.append(f"({applied.status})")
    if applied.note:
        parts.append(f"({applied.note})")
    return " + ".join(parts) or "(nothing drawn)"


def preview_masks(image: np.ndarray, max_regions: int = 12) -> list[np.ndarray]:
    """Cheap scikit-image regions for previewing local recipes (no mask cache involved)."""
    from skimage.segmentation import felzenszwalb

    labels = felzenszwalb(image, scale=200, sigma=0.8, min_size=max(8, image.size // 3 // 400))
    ids, counts = np.unique(labels, return_counts=True)
    biggest = ids[np.argsort(-counts, kind="stable")[:max_regions]]
    return [labels == i for i in biggest]


def recipe_sheet(images: Sequence[np.ndarray], recipe: Recipe, *, samples: int = 8, seed: int = 0,
                 cell: int = 160, work: int | None = None) -> Image.Image:
    work = work or cell
    squares = [thumbnail(im, work) for im in images]
    rows, labels = [], []
    for s in range(samples):
        clean = squares[s % len(squares)]
        masks = preview_masks(clean) if recipe.needs_masks else None
        applied = recipe.apply(clean, seed=seed, key=f"preview-{s}", masks=masks)
        row = [clean, applied.image]
        if recipe.needs_masks:
            mask = applied.mask if applied.mask is not None else np.zeros(clean.shape[:2], np.uint8)
            row.append(np.repeat(mask[:, :, None], 3, axis=2))
        rows.append([_show(im, cell) for im in row])
        labels.append(f"#{s}: {applied_label(applied)}")
    cols = ["clean", "degraded"] + (["region mask"] if recipe.needs_masks else [])
    return grid(rows, labels, cols, cell)
