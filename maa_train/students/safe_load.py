"""Loading weight files someone else made, without running anything inside them.

Every weight file this package reads goes through here:

- `load_safetensors`: our own formats (adapter checkpoints, training checkpoints). A file
  that is not safetensors (a pickle renamed, a truncated download) is a `WeightFileError`
  with one line naming it, never a raw parser error.
- `load_torch_pickle`: the public release's ``maa.pth`` and other torch pickles, with
  ``torch.load(weights_only=True)`` only: its unpickler builds tensors and plain containers
  and refuses every other callable a pickle names. The refusal says which callables the file
  wanted (read off its opcodes by `maa_format.pickle_scan`, which runs nothing).

There is deliberately no way to load a pickle with full unpickling here (weights_only is always on).
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from maa_format.pickle_scan import refusal_message


class WeightFileError(ValueError):
    """A weight file that is refused (could run code) or is not in the expected format."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def load_safetensors(path: str | os.PathLike, what: str = "weights") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file onto the CPU; FileNotFoundError propagates."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found ({what})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        hint = " (it looks like a torch pickle, which is not loaded here)" if _is_pickle(path) else ""
        raise WeightFileError(f"{path}: not a readable safetensors file ({what}){hint}: {_first_line(exc)}") from None


def _is_pickle(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head[:1] == b"\x80" or head[:2] == b"PK"


def refusal(path: str | os.PathLike, exc: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` refused the file."""
    return refusal_message(path, str(exc) or type(exc).__name__)


def load_torch_pickle(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; a refused or unreadable file
    is a `WeightFileError` naming it (and what it wanted to call); FileNotFoundError propagates."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    try:
        with warnings.catch_warnings():  # "pickle protocol 4 ..." notes: the refusal below says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError) as exc:
        raise WeightFileError(refusal(path, exc)) from None


__all__ = ["WeightFileError", "load_safetensors", "load_torch_pickle", "refusal"]
