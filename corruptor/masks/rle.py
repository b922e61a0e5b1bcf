"""COCO run-length encoding of binary masks (column-major runs, compressed string form).

Our own implementation of the public format, so masks written here are read by
pycocotools and the other way round, with no compiled dependency.
"""
from __future__ import annotations

import numpy as np


def _runs(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:  # counts always start with a run of zeros
        runs.insert(0, 0)
    return runs


def _encode_counts(runs: list[int]) -> str:
    out = bytearray()
    for i, value in enumerate(runs):
        x = value - runs[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def _decode_counts(text: str) -> list[int]:
    """Vectorised inverse of :func:`_encode_counts` (masks are decoded per sample in builds)."""
    c = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return []
    last = (c & 0x20) == 0  # a value's final 5-bit chunk has no continuation bit
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    # Position of each chunk inside its value: k = index - start of its value.
    value_of = np.repeat(np.arange(len(ends)), ends - starts + 1)
    k = np.arange(c.size) - starts[value_of]
    x = np.zeros(len(ends), dtype=np.int64)
    np.add.at(x, value_of, (c & 0x1F) << (5 * k))
    negative = (c[ends] & 0x10) != 0  # sign-extend from the last chunk
    x[negative] |= -1 << (5 * (ends[negative] - starts[negative] + 1))
    # Values after the third are deltas to the value two places back: a cumulative sum
    # within each parity class (indices 1, 3, 5, ... and 2, 4, 6, ...).
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    if len(x) > 2:
        runs[2::2] = np.cumsum(x[2::2])
    return runs.tolist()


def encode(mask: np.ndarray) -> dict:
    """Binary H x W mask to ``{"size": [h, w], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"RLE needs a 2-D mask, got shape {mask.shape}")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _encode_counts(_runs(mask))}


def decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode`; also accepts uncompressed ``counts`` lists."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = _decode_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != h * w:
        raise ValueError(f"RLE counts sum to {sum(runs)}, expected {h * w} for size {h}x{w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((h, w), order="F")


def area(rle: dict) -> int:
    counts = rle["counts"]
    runs = _decode_counts(counts) if isinstance(counts, str) else list(counts)
    return int(sum(runs[1::2]))
