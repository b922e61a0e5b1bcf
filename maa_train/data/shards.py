"""Finding a built dataset's shards and their sample counts; holding shards out for validation."""
from __future__ import annotations

import glob
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from maa_format.dataset_files import read_dataset, read_stats
from maa_format.keys import image_group
from maa_format.layout import DATASET_FILE, SHARDS_DIR, listed_shards
from maa_format.paths import check_inside

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardInfo:
    url: str
    count: int | None  # samples in the tar (successful pairs); None when unknown


def _count_from_stats(tar: Path, root: Path | None = None) -> int | None:
    """The shard's sample count from its stats (else its manifest); with the dataset's ``root``,
    those files must lie inside it."""
    stats, manifest = tar.with_suffix(".stats.json"), tar.with_suffix(".parquet")
    if root is not None:  # the manifest too: holdout_groups reads it later
        for beside in (stats, manifest):
            check_inside(beside, root, f"{root / DATASET_FILE}: shard {tar.name}")
    if stats.exists():
        data = read_stats(stats)
        for key in ("ok", "written", "samples_ok", "n_ok"):
            if isinstance(data.get(key), int):
                return data[key]
        counts = data.get("counts", {})
        if isinstance(counts, dict) and isinstance(counts.get("ok"), int):
            return counts["ok"]
    if manifest.exists():
        import pyarrow.parquet as pq

        table = pq.read_table(manifest, columns=["status"])
        return sum(1 for s in table.column("status").to_pylist() if s == "ok")
    return None


def resolve_shards(spec: str) -> list[ShardInfo]:
    """A dataset folder (with dataset.json), a glob of .tar files, or a text file of URLs."""
    path = Path(spec)
    if path.is_dir():
        if (path / DATASET_FILE).exists():
            # Names from the dataset's own file: format and schema checked, and confined to the dataset.
            tars = listed_shards(path, read_dataset(path, full=False))
        else:
            tars = sorted((path / SHARDS_DIR).glob("*.tar")) or sorted(path.glob("*.tar"))
        if not tars:
            raise FileNotFoundError(f"no shards found in dataset folder {path}")
        missing = [str(t) for t in tars if not Path(t).exists()]
        if missing:
            raise FileNotFoundError(f"dataset {path} lists shards that are missing: {missing[:3]}")
        return [ShardInfo(str(t), _count_from_stats(Path(t), path)) for t in tars]
    if any(ch in spec for ch in "*?["):
        tars = sorted(glob.glob(spec))
        if not tars:
            raise FileNotFoundError(f"shard glob '{spec}' matches no file")
        return [ShardInfo(t, _count_from_stats(Path(t))) for t in tars]
    if path.is_file() and path.suffix == ".txt":
        urls = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return [ShardInfo(u, None) for u in urls]
    if path.is_file() and path.suffix == ".tar":
        return [ShardInfo(str(path), _count_from_stats(path))]
    if "://" in spec:
        return [ShardInfo(spec, None)]
    raise FileNotFoundError(f"'{spec}' is not a dataset folder, a shard glob, a .tar, a URL or a .txt list")


def split_holdout(shards: list[ShardInfo], fraction: float) -> tuple[list[ShardInfo], list[ShardInfo]]:
    """Hold out whole shards (never a part of one) chosen by a hash of their name."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    if len(shards) < 2:
        raise ValueError(
            f"the dataset has {len(shards)} shard(s): cannot hold shards out for validation; "
            "build it with a smaller --shard-size or give data.val explicitly")
    n_val = max(1, round(len(shards) * fraction))
    ranked = sorted(shards, key=lambda s: hashlib.sha1(Path(s.url).name.encode()).hexdigest())
    val = {s.url for s in ranked[:n_val]}
    return [s for s in shards if s.url not in val], [s for s in shards if s.url in val]


def _ok_keys(shard: ShardInfo) -> list[str] | None:
    manifest = Path(shard.url).with_suffix(".parquet")
    if "://" in shard.url or not manifest.exists():
        return None
    import pyarrow.parquet as pq

    rows = pq.read_table(manifest, columns=["key", "status"]).to_pylist()
    return [r["key"] for r in rows if r["status"] == "ok"]


def holdout_groups(val: list[ShardInfo]) -> frozenset[str]:
    """Image groups present in the held-out shards, read from their manifests."""
    groups: set[str] = set()
    for shard in val:
        keys = _ok_keys(shard)
        if keys is None:
            log.warning("no manifest beside %s: variants of its images may also be trained on", shard.url)
            continue
        groups.update(image_group(k) for k in keys)
    return frozenset(groups)


def without_groups(shards: list[ShardInfo], groups: frozenset[str]) -> list[ShardInfo]:
    """Shard counts after dropping samples of held-out images (the loader skips them)."""
    out = []
    for shard in shards:
        keys = _ok_keys(shard) if groups else None
        count = shard.count if keys is None else sum(1 for k in keys if image_group(k) not in groups)
        out.append(ShardInfo(shard.url, count))
    return out


def op_families(shards: list[ShardInfo]) -> dict[str, str]:
    """Op name -> corruption family, as recorded in the ``dataset.json`` of each shard's
    dataset (empty for shards outside a dataset folder: their ops group as unknown)."""
    families: dict[str, str] = {}
    roots = {Path(s.url).parent.parent for s in shards
             if "://" not in s.url and Path(s.url).parent.name == SHARDS_DIR}
    for root in sorted(roots):
        if (root / DATASET_FILE).exists():
            families.update(read_dataset(root, full=False).get("op_families", {}))
    return families
