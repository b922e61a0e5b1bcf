"""Worker-local memo of the last few sources: decoded image, clean crops and their encoded
bytes, mapped masks.

Variants of one source in a shard share its decode, its clean crop (same geometry) and
that crop's encoding; recomputing them per variant was most of a variant's cost. Every
entry is a pure function of its key (source sha256 plus settings), so reuse cannot change
a byte. Arrays are stored read-only: a step that wrote into a shared image would raise
instead of corrupting the next variant. Bounded by sources and by bytes (a source's entries
go together; the current source always stays).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np

MAX_SOURCES = 8
MAX_BYTES = 512 * 2**20  # a worker's share of memory: a few full-size decoded photos


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


def _freeze(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, tuple):
        for v in value:
            _freeze(v)
    return value


class SourceMemo:
    def __init__(self, max_sources: int = MAX_SOURCES, max_bytes: int = MAX_BYTES) -> None:
        self.max_sources = max_sources
        self.max_bytes = max_bytes
        self._by_source: OrderedDict[str, dict[Hashable, Any]] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self.hits = 0
        self.misses = 0

    def get(self, sha256: str, key: Hashable, compute: Callable[[], Any]) -> Any:
        entries = self._by_source.get(sha256)
        if entries is None:
            entries = self._by_source[sha256] = {}
            self._bytes[sha256] = 0
        else:
            self._by_source.move_to_end(sha256)
        if key in entries:
            self.hits += 1
            return entries[key]
        self.misses += 1
        value = _freeze(compute())  # an exception stores nothing
        entries[key] = value
        self._bytes[sha256] += _nbytes(value)
        while len(self._by_source) > 1 and (len(self._by_source) > self.max_sources
                                            or sum(self._bytes.values()) > self.max_bytes):
            old, _ = self._by_source.popitem(last=False)
            del self._bytes[old]
        return value

    def clear(self) -> None:
        self._by_source.clear()
        self._bytes.clear()


MEMO = SourceMemo()
