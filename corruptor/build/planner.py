"""The build plan: which (image, variant, crop) becomes which sample in which shard.

The plan is a pure function of the scanned sources (sorted by name, items sorted by
ref), the target, the seed, the shard size and the variant/crop limits. It is written to
``plan.json`` before any work, so a resumed or rebuilt dataset reuses exactly the same
keys in the same shards.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

from maa_format.io import canonical_json, content_hash
from maa_format.keys import sample_key
from maa_format.rng import rng_for
from corruptor.sources.sources import ScannedSource, SourceItem

log = logging.getLogger(__name__)

PLAN_VERSION = 1


class PlanError(ValueError):
    """The sources cannot supply the requested target with the given limits."""


@dataclass(frozen=True)
class PlannedSample:
    key: str
    item: int          # index into Plan.items
    variant: int
    crop: int


@dataclass
class Plan:
    seed: int
    target: int
    shard_size: int
    sources: list[dict[str, Any]]
    items: list[SourceItem]
    shards: list[list[PlannedSample]]
    quotas: dict[str, int] = field(default_factory=dict)

    @property
    def samples(self) -> list[PlannedSample]:
        return [s for shard in self.shards for s in shard]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "seed": self.seed,
            "target": self.target,
            "shard_size": self.shard_size,
            "sources": self.sources,
            "quotas": self.quotas,
            "items": [it.to_dict() for it in self.items],
            "shards": [[[s.key, s.item, s.variant, s.crop] for s in shard] for shard in self.shards],
        }

    def to_json(self) -> str:
        return canonical_json(self.to_dict(), ascii=True)

    @property
    def hash(self) -> str:
        return content_hash(self.to_dict())

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Plan":
        if d.get("version") != PLAN_VERSION:
            raise PlanError(f"plan version {d.get('version')} is not supported (expected {PLAN_VERSION})")
        return Plan(
            seed=int(d["seed"]), target=int(d["target"]), shard_size=int(d["shard_size"]),
            sources=list(d["sources"]), items=[SourceItem.from_dict(x) for x in d["items"]],
            shards=[[PlannedSample(k, int(i), int(v), int(c)) for k, i, v, c in shard] for shard in d["shards"]],
            quotas=dict(d.get("quotas", {})),
        )


def split_target(target: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder split of ``target`` by weight; ties go to the earlier name."""
    total = sum(weights.values())
    exact = {n: target * w / total for n, w in weights.items()}
    quota = {n: int(math.floor(x)) for n, x in exact.items()}
    left = target - sum(quota.values())
    for name in sorted(exact, key=lambda n: (-(exact[n] - quota[n]), n))[:left]:
        quota[name] += 1
    return quota


def plan(
    sources: list[ScannedSource],
    target: int,
    seed: int,
    shard_size: int,
    variants: int | None = None,
    crops: int = 1,
) -> Plan:
    """Split ``target`` pairs over sources by weight and assign them to shards.

    Each image is used ``ceil(quota / images)`` times at most: round r gives variant
    ``r // crops`` and crop ``r % crops``. ``variants`` caps the variants per image
    (None: as many as needed). Paired sources use their given versions as variants and
    only crops can multiply them. Which images get the extra round, and the order of
    samples across shards, come from the seed.
    """
    if target < 1:
        raise PlanError(f"target must be >= 1, got {target}")
    if shard_size < 1:
        raise PlanError(f"shard_size must be >= 1, got {shard_size}")
    if crops < 1:
        raise PlanError(f"crops must be >= 1, got {crops}")
    if variants is not None and variants < 1:
        raise PlanError(f"variants must be >= 1, got {variants}")
    sources = sorted(sources, key=lambda s: s.spec.name)
    quotas = split_target(target, {s.spec.name: s.spec.weight for s in sources})
    items: list[SourceItem] = []
    samples: list[PlannedSample] = []
    for src in sources:
        base = len(items)
        items.extend(src.items)
        quota = quotas[src.spec.name]
        if quota == 0:
            continue
        n = len(src.items)
        paired = src.items[0].paired
        rounds = math.ceil(quota / n)
        limit = crops if paired else (variants * crops if variants is not None else None)
        if paired and rounds > limit:
            # A release pair is a fixed (clean, degraded) couple: each is used once (per crop), so
            # a share beyond them is not reachable. Plan what there is and say so.
            log.warning("source '%s' has %d pairs x %d crop(s): it gives %d of its %d planned samples "
                        "(--crops K uses K random crops of each pair)", src.spec.name, n, crops, n * crops, quota)
            quota, rounds = n * crops, crops
            quotas[src.spec.name] = quota
        if limit is not None and rounds > limit:
            what = "--crops" if paired else "--variants/--crops"
            raise PlanError(
                f"source '{src.spec.name}' has {n} {'pairs' if paired else 'images'} and needs {quota} samples "
                f"({rounds} per image) but {what} allow {limit} per image; raise {what} or lower the target/weight"
            )
        order = rng_for(seed, src.spec.name, "plan-order").permutation(n)
        for r in range(rounds):
            take = order if (r + 1) * n <= quota else order[: quota - r * n]
            for idx in take:
                item = src.items[int(idx)]
                variant, crop = (item.version, r) if paired else (r // crops, r % crops)
                samples.append(PlannedSample(sample_key(src.spec.name, _key_ref(item), variant, crop),
                                             base + int(idx), variant, crop))
    # Keep only the items the plan uses (in scan order): a 75K-pair plan over a million
    # listed files otherwise carries, serialises and hashes every one of them.
    used = sorted({s.item for s in samples})
    if len(used) < len(items):
        remap = {old: new for new, old in enumerate(used)}
        items = [items[i] for i in used]
        samples = [PlannedSample(s.key, remap[s.item], s.variant, s.crop) for s in samples]
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise PlanError("sample keys collide (two refs with the same sha1 prefix); rename one of the files")
    perm = rng_for(seed, "plan", "shuffle").permutation(len(samples))
    samples = [samples[int(i)] for i in perm]
    shards = [samples[i: i + shard_size] for i in range(0, len(samples), shard_size)]
    return Plan(seed=seed, target=target, shard_size=shard_size, sources=[s.to_dict() for s in sources],
                items=items, shards=shards, quotas=quotas)


_PATH_LOCATORS = ("file", "tar", "pdf")   # locator types whose first argument is a file path


def _anchor(path: str, base: str | os.PathLike) -> str:
    # normpath, as os.path.abspath does for the paths a scan stores now
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(os.fspath(base), path))


def anchor_source_path(path: str, base: str | os.PathLike) -> str:
    """A source path with its file part read from ``base`` when relative: ``synthetic:`` and
    ``embedded:`` name no file, ``pdf:FOLDER[?options]`` anchors its folder."""
    if path.startswith(("synthetic:", "embedded:")):
        return path
    if path.startswith("pdf:"):
        folder, sep, query = path[len("pdf:"):].partition("?")
        return f"pdf:{_anchor(folder, base)}{sep}{query}" if folder else path
    return _anchor(path, base)


def anchor_sources(sources: list, base: str | os.PathLike) -> list:
    """Source entries (plan.json's or dataset.json's) with their paths anchored at ``base``."""
    return [{**s, "path": anchor_source_path(s["path"], base)}
            if isinstance(s, dict) and isinstance(s.get("path"), str) else s for s in sources]


def anchor_paths(the_plan: Plan, base: str | os.PathLike) -> Plan:
    """``the_plan`` with relative source and locator paths read from ``base``.

    Plans written since paths are stored absolute need nothing; an older plan holds paths
    as they were typed, relative to a folder nobody recorded: rebuild reads them from the
    dataset's folder (``base``) instead of the current one, so the result does not depend
    on where the command runs."""
    def fix_locator(loc):
        if loc is None or loc.type not in _PATH_LOCATORS or not loc.args or os.path.isabs(loc.args[0]):
            return loc
        return replace(loc, args=(_anchor(loc.args[0], base), *loc.args[1:]))

    items = [replace(it, locator=fix_locator(it.locator), dis_locator=fix_locator(it.dis_locator))
             for it in the_plan.items]
    return replace(the_plan, items=items, sources=anchor_sources(the_plan.sources, base))


def _key_ref(item: SourceItem) -> str:
    # Paired versions share a reference; the dis path keeps their keys apart.
    return item.dis_ref if item.paired else item.ref
