"""Atomic file writes and canonical JSON: the two ways the format reaches the disk.

A file is written under a temporary name in its own folder and renamed into place, so a
reader never sees half a file and a crash leaves only a temp file that a later run can
recognise (by ``PARTIAL_TAG``, or by the caller's own temp name) and remove.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Union

PARTIAL_TAG = ".partial-"

Content = Union[bytes, str, Callable[[Path], None]]


def temp_name(path: str | Path) -> Path:
    """A temp file beside ``path``, unique per process and attempt (retries never share one)."""
    path = Path(path)
    return path.with_name(f".{path.name}{PARTIAL_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: str | Path, content: Content, *, temp: str | Path | None = None,
                 fsync: bool = False) -> Path:
    """Write ``content`` (bytes, text, or a function that writes the temp path given to it)
    to ``path`` through a temp file and a rename; the temp file goes on any failure."""
    path = Path(path)
    tmp = Path(temp) if temp is not None else temp_name(path)
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        elif isinstance(content, str):
            tmp.write_text(content)
        else:
            content(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def canonical_json(obj: Any, *, ascii: bool = False) -> str:
    """Sorted keys, no spaces: equal values give equal strings. ``ascii`` escapes non-ASCII
    text, the form every content hash of the project (recipe, plan, mask settings) uses."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii)


def content_hash(obj: Any) -> str:
    """First 16 hex digits of the sha256 of ``obj``'s canonical (ASCII) JSON."""
    return hashlib.sha256(canonical_json(obj, ascii=True).encode("ascii")).hexdigest()[:16]


def json_bytes(obj: Any) -> bytes:
    return canonical_json(obj).encode("utf-8")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
