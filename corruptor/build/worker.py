"""Turns one shard's planned samples into clean/degraded pairs and writes the shard.

Per sample: read bytes, hash, decode, resize/crop to the recipe's output, fetch masks
from the cache when the recipe has local ops, apply the recipe, encode, and record a
manifest row. Any failure of one sample becomes that sample's status row; the shard
goes on. Only a failure of the shard itself (cannot write, killed) leaves it not done,
for the distributor to retry.

Everything here is a function of (plan entry, recipe, seed): no clock, no process id,
no global RNG, so any worker on any machine writes the same bytes.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from corruptor.run.distributor import report_progress
from maa_format.rng import rng_for
from corruptor.sources.sources import ItemReadError, SourceItem
from corruptor.build.writer import ShardWriter, json_bytes, shard_name

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MIN_SIDE = 8
IMAGE_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True)
class WorkerConfig:
    """What every shard of one build shares. Plain data so it pickles to any worker."""

    out_dir: str
    recipe: dict[str, Any]
    recipe_hash: str
    seed: int
    mask_source: dict[str, Any] | None = None   # MaskSourceConfig as a dict; None: no masks
    mask_root: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    # 1 when several workers share the cores: OpenCV's own threads would oversubscribe them.
    cv2_threads: int | None = None


@dataclass(frozen=True)
class ShardTask:
    index: int
    samples: list[tuple[str, SourceItem, int, int]]   # key, item, variant, crop
    config: WorkerConfig

    @property
    def name(self) -> str:
        return shard_name(self.index)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class ShardResult:
    index: int
    rows: int
    ok: int
    failed: int
    skipped: int
    transient_failures: int
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)


class SampleFailure(Exception):
    """A sample-level failure with the reason recorded in its row."""

    def __init__(self, reason: str, kind: str = "permanent"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


# --- per-process caches: built once per worker process, keyed by their settings -------


@functools.lru_cache(maxsize=4)
def _recipe(recipe_json: str):
    from corruptor.recipe.recipe import load_recipe

    return load_recipe(json.loads(recipe_json))


class _LazyMaskSource:
    """Builds the real source on the first cache miss: a rebuild whose masks are all
    cached never loads a model (SAM2 weights take seconds and GPU memory)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._source = None

    def generate(self, images, keys=None):
        if self._source is None:
            from corruptor.masks.registry import make_mask_source

            self._source = make_mask_source(self.cfg)
        return self._source.generate(images, keys)


@functools.lru_cache(maxsize=2)
def _mask_cache(mask_json: str, root: str):
    from corruptor.masks.cache import MaskCache
    from corruptor.masks.source import MaskSourceConfig

    cfg = MaskSourceConfig.model_validate(json.loads(mask_json))
    return _LazyMaskSource(cfg), MaskCache(root, cfg)


# --- image helpers ---------------------------------------------------------------------


def decode(data: bytes, max_pixels: int, min_side: int = 1) -> tuple[np.ndarray, tuple[str, ...]]:
    """(uint8 RGB image, decode notes); a file that cannot be used is a permanent failure."""
    from corruptor.build.decode import DecodeError, decode_image

    try:
        decoded = decode_image(data, max_pixels=max_pixels, min_side=min_side)
    except DecodeError as exc:
        raise SampleFailure(str(exc)) from None
    return np.ascontiguousarray(decoded.image), tuple(decoded.notes)


def output_settings(recipe) -> tuple[int | None, str, str, int | None]:
    out = getattr(recipe, "output", None)
    size = getattr(out, "size", None)
    crop = getattr(out, "crop", "none") or "none"
    fmt = getattr(out, "format", "png") or "png"
    quality = getattr(out, "quality", None)
    return size, crop, fmt, quality


@dataclass(frozen=True)
class Geometry:
    """Resize to ``scaled`` (w, h), then crop ``box`` (x, y, w, h) from it."""

    scaled: tuple[int, int]
    box: tuple[int, int, int, int]

    def apply(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        h, w = image.shape[:2]
        if (w, h) != self.scaled:
            shrink = self.scaled[0] < w
            interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            image = cv2.resize(image, self.scaled, interpolation=interp)
        x, y, cw, ch = self.box
        return np.ascontiguousarray(image[y: y + ch, x: x + cw])


def plan_geometry(shape: tuple[int, int], size: int | None, crop: str, rng: np.random.Generator) -> Geometry:
    h, w = shape
    if size:
        scale = size / min(h, w)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    else:
        sw, sh = w, h
    side = min(sw, sh)
    if crop == "none":
        return Geometry((sw, sh), (0, 0, sw, sh))
    if crop == "center":
        x, y = (sw - side) // 2, (sh - side) // 2
    elif crop == "random":
        x = int(rng.integers(0, sw - side + 1))
        y = int(rng.integers(0, sh - side + 1))
    else:
        raise ValueError(f"output.crop '{crop}' not allowed; allowed: center, random, none")
    return Geometry((sw, sh), (x, y, side, side))


def encode(image: np.ndarray, fmt: str, quality: int | None = None) -> bytes:
    """Deterministic encoding (same libraries, same bytes). PNG is lossless."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        # Lossless at any level; 1 encodes ~1.5x faster than 3 for ~7% more bytes (512 px photos).
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        ext = ".png"
    elif fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality or 95)]
        ext = ".jpg"
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality or 95)]
        ext = ".webp"
    else:
        raise ValueError(f"output.format '{fmt}' not allowed; allowed: png, jpeg, webp")
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise SampleFailure(f"encode: OpenCV could not encode {fmt}", kind="transient")
    return buf.tobytes()


def _ops_summary(ops: list[dict[str, Any]]) -> str:
    parts = []
    for op in ops or []:
        name = op.get("op") or op.get("name") or "?"
        sev = op.get("severity")
        where = "@local" if "region" in op else ""
        parts.append(f"{name}{where}:{sev}" if sev is not None else f"{name}{where}")
    return ",".join(parts)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_jsonable, sort_keys=True))


# --- one sample ------------------------------------------------------------------------


def process_sample(key: str, item: SourceItem, variant: int, crop_index: int, cfg: WorkerConfig
                   ) -> tuple[dict[str, Any], dict[str, bytes] | None]:
    """(manifest row, tar members or None). Raises only for bugs in this function."""
    row: dict[str, Any] = {
        "key": key, "source": item.source, "ref": item.ref, "dis_ref": item.dis_ref,
        "variant": variant, "crop": crop_index, "n_regions": 0,
    }
    try:
        files, info = _make_pair(key, item, cfg, row)
    except _Skipped:
        return row, None
    except SampleFailure as exc:
        row.update(status="failed", error=exc.reason, error_kind=exc.kind)
        return row, None
    except ItemReadError as exc:
        row.update(status="failed", error=str(exc), error_kind="permanent")
        return row, None
    except MemoryError:
        row.update(status="failed", error="out of memory", error_kind="transient")
        return row, None
    except OSError as exc:
        row.update(status="failed", error=f"io: {type(exc).__name__}: {exc}", error_kind="transient")
        return row, None
    except Exception as exc:  # recorded, not swallowed: the row carries type and message
        row.update(status="failed", error=f"error: {type(exc).__name__}: {exc}", error_kind="transient")
        return row, None
    row.update(info)
    return row, files


def _make_pair(key: str, item: SourceItem, cfg: WorkerConfig, row: dict[str, Any]):
    recipe = _recipe(json.dumps(cfg.recipe, sort_keys=True))
    size, crop, fmt, quality = output_settings(recipe)
    data = item.read()
    sha = hashlib.sha256(data).hexdigest()
    row["sha256"] = sha
    source_image, notes = decode(data, cfg.max_pixels, cfg.min_side)
    sh, sw = source_image.shape[:2]
    row.update(source_width=sw, source_height=sh)
    geometry = plan_geometry((sh, sw), size, crop, rng_for(cfg.seed, key, "crop"))
    clean = geometry.apply(source_image)
    provenance: dict[str, Any] = {
        "key": key, "source": item.source, "source_path": item.ref, "source_sha256": sha,
        "source_size": [sw, sh], "recipe_hash": cfg.recipe_hash, "seed": cfg.seed,
        "decode_notes": list(notes), "variant": row["variant"], "crop": row["crop"],
        "crop_box": list(geometry.box), "scaled_size": list(geometry.scaled),
    }
    mask_png = None
    if item.paired:
        dis_data = item.read_dis()
        dis_sha = hashlib.sha256(dis_data).hexdigest()
        dis, _ = decode(dis_data, cfg.max_pixels)
        if dis.shape[:2] != source_image.shape[:2]:
            # Released pairs are sometimes saved at another size; bring them onto the reference grid.
            dis = cv2.resize(dis, (sw, sh), interpolation=cv2.INTER_AREA)
        degraded = geometry.apply(dis)
        ops, all_ops = [], []
        provenance.update(paired=True, dis_path=item.dis_ref, dis_sha256=dis_sha, version=item.version,
                          ops=[], regions=[])
        if item.meta is not None:  # the release's metadata.jsonl record of this pair
            provenance["release_metadata"] = item.meta
    else:
        masks = None
        if getattr(recipe, "needs_masks", False):
            masks = _masks_for(item, sha, source_image, geometry, cfg)
        applied = recipe.apply(clean, seed=cfg.seed, key=key, masks=masks)
        if getattr(applied, "status", "ok") != "ok":
            note = getattr(applied, "note", None) or "recipe skipped this sample"
            row.update(status="skipped", error=f"skipped: {note}", error_kind="permanent",
                       ops=_ops_summary(applied.ops), ops_json=json.dumps(_canonical(applied.ops), sort_keys=True))
            raise _Skipped()
        degraded = applied.image
        ops = _canonical(list(applied.ops or []))
        regions = _canonical(list(getattr(applied, "regions", None) or []))
        all_ops = ops + [{**op, "region": j} for j, r in enumerate(regions) for op in r.get("ops", [])]
        provenance.update(paired=False, ops=ops, regions=regions)
        if getattr(applied, "note", None):
            provenance["note"] = applied.note
        mask = getattr(applied, "mask", None)
        if regions and mask is not None:
            mask_png = encode(np.asarray(mask, dtype=np.uint8), "png")
            row["n_regions"] = len(regions)
    if degraded.shape != clean.shape:
        raise SampleFailure(f"shape: degraded {degraded.shape} differs from clean {clean.shape}")
    ext = IMAGE_EXT[fmt]
    files = {f"clean.{ext}": encode(clean, fmt, quality), f"degraded.{ext}": encode(degraded, fmt, quality)}
    if mask_png is not None:
        files["mask.png"] = mask_png
    files["json"] = json_bytes(provenance)
    h, w = clean.shape[:2]
    info = {
        "status": "ok", "error": None, "error_kind": None,
        "ops": _ops_summary(all_ops), "ops_json": json.dumps(all_ops, sort_keys=True),
        "width": w, "height": h,
        "clean_bytes": len(files[f"clean.{ext}"]), "degraded_bytes": len(files[f"degraded.{ext}"]),
        "mask_bytes": len(mask_png) if mask_png is not None else 0,
    }
    return files, info


class _Skipped(SampleFailure):
    def __init__(self):
        super().__init__("skipped")


def _masks_for(item: SourceItem, sha: str, image: np.ndarray, geometry: Geometry, cfg: WorkerConfig):
    """Masks of the full source image (that is what the cache keys on), mapped onto the crop.

    Every sample fills the cache, so a rebuild with another recipe never segments again.
    When the masks are already cached, they are returned as a callable that the recipe
    calls only if its local stage runs (reading and mapping them is a third of a sample's
    cost otherwise).
    """
    if cfg.mask_source is None or cfg.mask_root is None:
        raise SampleFailure("masks: the recipe has local ops but the build has no mask source", kind="permanent")
    from corruptor.masks.source import MaskError

    source, cache = _mask_cache(json.dumps(cfg.mask_source, sort_keys=True), cfg.mask_root)

    def load() -> list[np.ndarray]:
        try:
            masks = cache.get_or_compute(source, sha, image)
        except MaskError as exc:
            raise SampleFailure(f"{getattr(exc, 'status', 'mask_error')}: {exc}") from None
        out = []
        for m in masks:
            mm = geometry.apply(np.asarray(m, dtype=np.uint8), nearest=True).astype(bool)
            if mm.any():
                out.append(mm)
        return out

    return load if cache.has(sha) else load()


# --- one shard -------------------------------------------------------------------------


def process_shard(task: ShardTask) -> ShardResult:
    """Write one shard completely, or raise (and leave nothing marked done)."""
    start = time.perf_counter()
    if task.config.cv2_threads is not None:
        cv2.setNumThreads(task.config.cv2_threads)
    writer = ShardWriter(Path(task.config.out_dir) / "shards", task.index)
    try:
        for n, (key, item, variant, crop_index) in enumerate(task.samples, 1):
            row, files = process_sample(key, item, variant, crop_index, task.config)
            writer.add(row, files)
            report_progress(n)
        seconds = time.perf_counter() - start
        ok = sum(1 for r in writer.rows if r["status"] == "ok")
        stats = writer.close({"seconds": round(seconds, 4), "pairs_per_s": round(ok / seconds, 3) if seconds else None})
    except BaseException:
        writer.abort()
        raise
    return ShardResult(task.index, stats["rows"], stats["ok"], stats["failed"], stats["skipped"],
                       stats["transient_failures"], seconds, stats)
