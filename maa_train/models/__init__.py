"""Fetchable pretrained encoders: `maa-models list | fetch NAME --out DIR`.

One module per model registers itself in ``MODELS``; importing this package imports them.
"""
from maa_train.models.errors import (DownloadError, GraphMismatchError, HashMismatchError, ModelFetchError,
                                     UnknownModelError)
from maa_train.models.registry import MODELS, FetchableModel, get_model, register_model

from maa_train.models import vit_s_dinov2  # noqa: F401  (registers "vit-s-dinov2")

__all__ = ["MODELS", "FetchableModel", "get_model", "register_model", "ModelFetchError", "UnknownModelError",
           "DownloadError", "HashMismatchError", "GraphMismatchError"]
