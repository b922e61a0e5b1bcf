"""SAM2 checkpoint files, loaded without running anything inside them.

A SAM2 checkpoint is a torch pickle (``{"model": state_dict}``) at a path the user gives, or
one a dataset's ``plan.json`` recorded when it is rebuilt. `sam2.build_sam.build_sam2` loads
it with ``torch.load(weights_only=True)`` in sam2 1.1.0, but that is a detail of one
release: here the file is read by our own ``weights_only=True`` load *before* any model is
built (a refused file costs nothing), and the model is built without a checkpoint and given
the state dict. A refusal names the callables the pickle wanted (see maa_format.pickle_scan).
"""
from __future__ import annotations

import os
import pickle
import warnings
from typing import Any

from maa_format.pickle_scan import refusal_message


class Sam2CheckpointError(ValueError):
    """A SAM2 checkpoint that is refused (could run code) or is not in the release's layout."""


def read_sam2_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The ``model`` state dict of a SAM2 checkpoint, read with ``weights_only=True`` only."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OSError) as exc:
        raise Sam2CheckpointError(refusal_message(path, str(exc) or type(exc).__name__)) from None
    state = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise Sam2CheckpointError(f"{path}: expected a SAM2 checkpoint ({{'model': state_dict}}), "
                                  f"found {type(loaded).__name__}")
    return state


__all__ = ["Sam2CheckpointError", "read_sam2_checkpoint"]
