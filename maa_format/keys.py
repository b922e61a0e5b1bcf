"""The sample-key grammar: ``{source}-{sha1(ref)[:12]}-v{variant}-c{crop}``.

Keys are stable (a pure function of the source name, the item's reference and the
variant/crop), unique within a dataset, and free of dots and slashes (WebDataset splits
member names at the first dot). Variants and crops of one image share its *group*, the
key without the ``-vN-cN`` suffix, so a reader can hold whole images out.
"""
from __future__ import annotations

import hashlib
import re

_SUFFIX = re.compile(r"-v\d+-c\d+$")


def sample_key(source: str, ref: str, variant: int, crop: int) -> str:
    # surrogateescape: a file name that is not UTF-8 (any bytes a file system allows) hashes
    # as its raw bytes; a UTF-8 name gives the same digest as before.
    digest = hashlib.sha1(ref.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{source}-{digest}-v{variant}-c{crop}"


def image_group(key: str) -> str:
    """The source image a sample key comes from (variants and crops of one image share it)."""
    return _SUFFIX.sub("", key)


def check_key(key: str) -> str:
    if "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
    return key
