"""Cached masks seen through a sample's geometry, decoded only when a region is chosen.

The worker maps each full-image mask onto the output crop (nearest-neighbour resize, then
crop) and the local stage picks regions by their area *in the crop*. Decoding and mapping
every stored mask for that (2,981 maps for 171 used, on 101 samples) was the build's
largest avoidable cost. Here the area of a mapped mask comes straight from its RLE runs:
OpenCV's INTER_NEAREST reads source pixel (rows[y], cols[x]) for output pixel (y, x), so
the mapped area is sum over the mask's pixels of (how often its row is read) x (how often
its column is read), a prefix sum over the column-major runs. Only the chosen masks are
decoded and mapped, with plain index takes on the crop. The result is exactly what
``Geometry.apply(mask, nearest=True)`` gives (tests/corruptor/build/test_mask_view.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from corruptor.masks import rle


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index read by each output index in OpenCV's INTER_NEAREST resize (same
    double-precision arithmetic: ifx = 1 / (dst / src), sx = floor(x * ifx))."""
    ifx = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * ifx).astype(np.intp), src - 1)


class CroppedMasks(Sequence):
    """The non-empty mapped masks of one source under one geometry, lazily decoded.

    ``areas[i]`` is the pixel count of mask i in the crop; ``shape`` is the crop's (h, w).
    Indexing decodes and maps one mask (bool array of ``shape``) and keeps it.
    """

    def __init__(self, runs: Sequence[np.ndarray], size: tuple[int, int], geometry) -> None:
        h, w = size
        sw, sh = geometry.scaled
        x, y, cw, ch = geometry.box
        self.shape = (int(ch), int(cw))
        self._rows = nearest_index(h, sh)[y: y + ch] if (sw, sh) != (w, h) else np.arange(y, y + ch)
        self._cols = nearest_index(w, sw)[x: x + cw] if (sw, sh) != (w, h) else np.arange(x, x + cw)
        # Weight of each source pixel (column-major flat index): times it is read.
        row_w = np.bincount(self._rows, minlength=h).astype(np.int64)
        col_w = np.bincount(self._cols, minlength=w).astype(np.int64)
        weights = np.outer(col_w, row_w).ravel()  # column-major: column c, then row r
        prefix = np.concatenate([[0], np.cumsum(weights)])
        self._size = (h, w)
        self._runs: list[np.ndarray] = []
        self.areas: list[int] = []
        for r in runs:
            bounds = np.concatenate([[0], np.cumsum(r)])
            area = int(np.sum(prefix[bounds[2::2]] - prefix[bounds[1:-1:2]]))
            if area > 0:  # the eager path dropped masks that miss the crop
                self._runs.append(r)
                self.areas.append(area)
        self._decoded: dict[int, np.ndarray] = {}

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def __len__(self) -> int:
        return len(self._runs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if i not in self._decoded:
            values = np.zeros(len(self._runs[i]), dtype=bool)
            values[1::2] = True
            full = np.repeat(values, self._runs[i]).reshape(self._size, order="F")
            self._decoded[i] = full.take(self._rows, axis=0).take(self._cols, axis=1)
        return self._decoded[i]


def runs_of(counts: str, size: tuple[int, int]) -> np.ndarray:
    """Checked run lengths of one stored COCO RLE string."""
    runs = np.asarray(rle._decode_counts(counts), dtype=np.int64)
    if int(runs.sum()) != size[0] * size[1] or (runs < 0).any():
        raise ValueError(f"RLE counts sum to {int(runs.sum())}, expected {size[0] * size[1]}")
    return runs
