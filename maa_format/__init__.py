"""maa_format: the dataset format both halves share, and nothing else.

A built dataset is a folder (``layout``): ``dataset.json`` naming the format version
(``FORMAT``, checked on read), ``shards/NNNNNN.{tar,parquet,stats.json}`` and the
``masks/`` cache. ``schema`` is the Parquet manifest, ``keys`` the sample-key grammar,
``rng`` the derivation of every random generator from (seed, key, streams), ``io`` the
atomic write and canonical JSON every writer uses. A dataset may come from anyone:
``dataset_files`` reads its JSON files schema-checked, ``paths`` keeps the paths they name
inside it, ``safe_yaml`` bounds recipe and config YAML, ``pickle_scan`` names what a refused
weight file wanted to call, ``errors`` turns a pydantic error into one line naming each field.

corruptor writes the format and maa_train reads it; neither imports the other. No
torch, no OpenCV here: the package is cheap to import in any worker.
"""
from maa_format.layout import FORMAT, FormatError, check_format

__all__ = ["FORMAT", "FormatError", "check_format"]
