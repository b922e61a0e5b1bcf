"""One YAML loader for every recipe, config and ``--set`` value: bounded in size, aliases and depth.

``yaml.safe_load`` builds no arbitrary objects, but it still takes whatever it is given: a
"billion laughs" file (nine levels of ten aliases, a few hundred bytes) expands to 10^9
nodes as soon as anything walks it, a 50 MB file keeps the pure-Python parser busy for
minutes, and a 50,000-deep ``[[[...]]]`` overflows the composer's recursion. Here:

- the file is read up to `MAX_BYTES` and must be UTF-8;
- nesting deeper than `MAX_DEPTH` collections is refused while composing (before recursion
  gets deep);
- the document's size with every alias expanded is counted while composing (an alias adds
  the size of the node it names) and refused above `MAX_NODES`; an alias inside the node it
  names (a recursive structure) is refused outright.

Every refusal is a `YamlLoadError` (a ValueError) with a one-line message naming the file,
the limit and where the parser was.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20        # 1 MiB: recipes and configs are a few KiB
MAX_DEPTH = 64             # nested mappings/sequences
MAX_NODES = 100_000        # nodes with aliases expanded; a real recipe has a few hundred


class YamlLoadError(ValueError):
    """A YAML text that is malformed, not UTF-8 or over one of the limits (one-line message)."""


def _at(mark) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts depth and alias-expanded nodes while composing."""

    def __init__(self, stream, label: str, max_depth: int, max_nodes: int):
        super().__init__(stream)
        self._label, self._max_depth, self._max_nodes = label, max_depth, max_nodes
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) -> its size with aliases expanded

    def _count(self, n: int, mark) -> None:
        self._nodes += n
        if self._nodes > self._max_nodes:
            raise YamlLoadError(f"{self._label}: more than {self._max_nodes} nodes once aliases are expanded"
                                f"{_at(mark)} (an alias bomb?); the limit is {self._max_nodes}")

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)  # the anchored node (raises on an unknown alias)
            size = self._sizes.get(id(node))
            if size is None:
                raise YamlLoadError(f"{self._label}: alias *{event.anchor}{_at(event.start_mark)} is inside the "
                                    f"node it names (a recursive structure, refused)")
            self._count(size, event.start_mark)
            return node
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if self._depth >= self._max_depth:
                raise YamlLoadError(f"{self._label}: nested deeper than {self._max_depth} levels"
                                    f"{_at(event.start_mark)}; the limit is {self._max_depth}")
        start = self._nodes
        self._count(1, event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if event.anchor is not None:
            self._sizes[id(node)] = self._nodes - start
        return node


def _malformed(label: str, exc: yaml.YAMLError) -> YamlLoadError:
    if isinstance(exc, yaml.reader.ReaderError):
        return YamlLoadError(f"{label}: character #x{exc.character:04x} at offset {exc.position} is not allowed "
                             f"in YAML ({exc.reason})")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed"
        return YamlLoadError(f"{label}: malformed YAML{_at(mark)}: {problem}")
    return YamlLoadError(f"{label}: malformed YAML: {' '.join(str(exc).split())}")


def loads(text: str | bytes, label: str = "<string>", *, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """Parse one YAML document from ``text`` (bytes must be UTF-8) within the limits."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            raise YamlLoadError(f"{label}: larger than {max_bytes} bytes; the limit is {max_bytes} bytes "
                                f"({max_bytes / 2**20:g} MiB)")
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise YamlLoadError(f"{label}: not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset "
                                f"{exc.start} cannot be decoded") from None
    elif len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise YamlLoadError(f"{label}: larger than {max_bytes} bytes; the limit is {max_bytes} bytes "
                            f"({max_bytes / 2**20:g} MiB)")
    loader = None
    try:
        loader = _BoundedLoader(text, label, max_depth, max_nodes)  # checks the characters first
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _malformed(label, exc) from None
    except RecursionError:  # not reachable within MAX_DEPTH; kept so no limit change can bring it back
        raise YamlLoadError(f"{label}: nested too deeply to parse") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: str | os.PathLike, label: str | None = None, *, max_bytes: int = MAX_BYTES,
              max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """Parse the YAML file at ``path``; reads at most ``max_bytes`` + 1 bytes of it (also from a
    device or pipe that never ends). OSError (missing, unreadable) propagates unchanged."""
    label = str(path) if label is None else label
    with open(Path(path), "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YamlLoadError(f"{label}: larger than {max_bytes} bytes; the limit is {max_bytes} bytes "
                            f"({max_bytes / 2**20:g} MiB)")
    return loads(data, label, max_bytes=max_bytes, max_depth=max_depth, max_nodes=max_nodes)


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlLoadError", "load_file", "loads"]
