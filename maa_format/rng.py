"""Explicit randomness: every random draw in the project comes from a Generator made here.

A generator is derived from (seed, key, *streams) by hashing, so the same sample key
gives the same numbers in any process, on any worker, in any order of work.
"""
from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, key: str = "", *streams: str) -> int:
    """A 128-bit integer that depends only on the arguments (not on Python's hash seed)."""
    text = "\x1f".join([str(int(seed)), str(key), *map(str, streams)])
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest(), "little")


def rng_for(seed: int, key: str = "", *streams: str) -> np.random.Generator:
    """A NumPy generator for one sample (``key``) and one purpose (``streams``)."""
    return np.random.default_rng(np.random.SeedSequence(derive_seed(seed, key, *streams)))


def child_seed(rng: np.random.Generator) -> int:
    """An integer seed drawn from ``rng``: ops that need a noise field take it as a parameter."""
    return int(rng.integers(0, 2**63 - 1))
