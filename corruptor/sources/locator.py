"""Locators: how one item's encoded image bytes are read, as small JSON-safe values.

A locator is a ``type`` plus JSON-safe ``args``; the type picks a reader. Plans hold
locators rather than open handles, so they can be written to disk, shipped to worker
processes or Ray tasks, and re-read by ``rebuild`` without rescanning anything. Every
reader yields encoded image *bytes*: the worker hashes exactly what it decodes.

Plain files, tar members and refused entries are read here; a scheme that generates its
images (synthetic pages, embedded photos, PDF pages) registers its own reader with
``register_reader`` in its module (corruptor.sources.schemes), loaded on first use.
"""
from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from typing import Callable

Reader = Callable[..., bytes]
_READERS: dict[str, Reader] = {}


class ItemReadError(ValueError):
    """One item whose image cannot be made, for good (e.g. a PDF page that does not render):
    recorded as that sample's failed status row, the build goes on."""


class NotRegularFile(OSError):
    """An item that is not a regular file (FIFO, device, socket, tar link, dangling link):
    never opened, recorded as a permanent failure in its sample's row."""


def register_reader(locator_type: str) -> Callable[[Reader], Reader]:
    def add(fn: Reader) -> Reader:
        _READERS[locator_type] = fn
        return fn

    return add


def reader(locator_type: str) -> Reader:
    if locator_type not in _READERS:
        from corruptor.sources.scheme import load_schemes

        load_schemes()   # generated images: the scheme module registers the reader
    try:
        return _READERS[locator_type]
    except KeyError:
        raise ValueError(f"unknown locator type '{locator_type}'; known: {', '.join(sorted(_READERS))}") from None


def reader_types() -> tuple[str, ...]:
    reader("file")
    return tuple(sorted(_READERS))


@dataclass(frozen=True)
class Locator:
    """Reads one encoded image. ``type`` selects the reader; ``args`` are JSON-safe."""

    type: str
    args: tuple = ()

    def read(self) -> bytes:
        return reader(self.type)(*self.args)

    def to_list(self) -> list:
        return [self.type, *self.args]

    @staticmethod
    def from_list(value: list) -> "Locator":
        return Locator(value[0], tuple(value[1:]))


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


@register_reader("file")
def read_file(path: str) -> bytes:
    # stat before open: opening a FIFO blocks until a writer comes, a device may act on open.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):   # the link is there, its target is not: no later run will read it
            raise NotRegularFile("not_regular_file: a symbolic link to nothing, not read") from None
        raise
    if not stat.S_ISREG(mode):
        raise NotRegularFile(f"not_regular_file: {_file_type(mode)}, not read")
    # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still returns.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"not_regular_file: {_file_type(mode)}, not read")
        return fh.read()


@register_reader("refused")
def read_refused(reason: str) -> bytes:
    """A tar member that is a link, device or FIFO: listed so that it gets a row, never read."""
    raise NotRegularFile(f"not_regular_file: {reason}")


@register_reader("tar")
def read_tar_member(path: str, offset: int, size: int) -> bytes:
    # Offsets are recorded at scan time, so reading a member needs no archive walk.
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise OSError(f"{path}: member at offset {offset} is truncated ({len(data)} of {size} bytes)")
    return data


def encode_png(image) -> bytes:
    from PIL import Image

    # Generated images exist as bytes only to be hashed and decoded again by the worker:
    # the fastest lossless level is enough.
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
