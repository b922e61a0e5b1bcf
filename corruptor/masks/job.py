"""The mask stage at scale: fill a dataset's mask cache for every source image.

Reader (scan the build's sources, hash each item's bytes), worker (`MaskWorker`: read,
decode, segment, write the cache), run in batches by the build's runners
(`corruptor.run.registry`: ``local`` processes or ``ray``; SAM2 on a GPU runs on Ray
actors holding one GPU each, so the model loads once per actor). Images already in the
cache are skipped before anything is scheduled, so a stopped job resumes where it left off.

Sources are the build's own (`corruptor.sources.sources`): folders, path lists, WebDataset tars,
ref/dis pair folders, synthetic and embedded images. Each item is hashed from the bytes
its locator reads, the same bytes the build's worker hashes, so the build finds every
mask computed here under the same key.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from corruptor.masks.cache import MaskCache, remove_stale_temps, temp_file
from maa_format.io import atomic_write
from corruptor.masks.registry import make_mask_source, validate
from corruptor.masks.source import MaskError, MaskSourceConfig
from corruptor.run.registry import UnknownRunnerError, make_runner
from corruptor.run.runner import RunnerError, RunnerSettings
from corruptor.sources.sources import Locator, SourceItem, SourceSpec, scan_sources

log = logging.getLogger(__name__)

ITEM_FIELDS: tuple[str, ...] = ("source", "ref", "path", "locator", "sha256")
# Reading these is I/O (plain files, tar members), so several readers overlap their waits.
# Generated images (synthetic pages, embedded photos) are rendered one at a time: the
# page renderer shares font objects that are not safe across threads.
_THREADED_READS = frozenset({"file", "tar"})
_READ_THREADS = 8


@dataclass(frozen=True)
class ImageItem:
    source: str
    ref: str  # the item's id inside its source (relative path, tar member, page id)
    path: str  # what a person can look up: the file's absolute path, else source:ref
    locator: str  # the item's `Locator.to_list()` as JSON: plain strings ship to any worker
    sha256: str


@dataclass
class MaskJobReport:
    settings_hash: str
    total: int = 0
    skipped_cached: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.statuses[row["status"]] = self.statuses.get(row["status"], 0) + 1
        if row["status"] != "ok":
            self.failures.append(row)


def as_specs(sources: Sequence[SourceSpec] | Mapping[str, str | Path]) -> list[SourceSpec]:
    """Source specs as the build takes them; a ``{name: path}`` mapping is read as plain specs."""
    if isinstance(sources, Mapping):
        return [SourceSpec(name, str(path)) for name, path in sources.items()]
    return list(sources)


def display_path(item: SourceItem) -> str:
    if item.locator.type == "file":
        return str(Path(item.locator.args[0]).resolve())
    return f"{item.source}:{item.ref}"


def _sha_of(locator: Locator) -> str:
    return hashlib.sha256(locator.read()).hexdigest()


def collect(sources: Sequence[SourceSpec] | Mapping[str, str | Path], progress: bool = False
            ) -> tuple[list[ImageItem], list[dict]]:
    """(one item per distinct content, rows of items whose bytes could not be read).

    Paired items are hashed (and later segmented) by their reference image: that is the
    image the build keys its masks on. Raises `SourceError` for a missing or empty source.
    """
    from tqdm import tqdm

    scanned = [it for src in scan_sources(as_specs(sources)) for it in src.items]

    def hash_one(item: SourceItem) -> str | Exception:
        try:
            return _sha_of(item.locator)
        except Exception as exc:  # an unreadable file or tar member is that item's status
            return exc

    threaded = [it for it in scanned if it.locator.type in _THREADED_READS]
    shas: dict[int, str | Exception] = {}
    with tqdm(total=len(scanned), desc="hashing sources", unit="img", disable=not progress) as bar:
        with ThreadPoolExecutor(max_workers=min(_READ_THREADS, os.cpu_count() or 1)) as pool:
            for it, sha in zip(threaded, pool.map(hash_one, threaded)):
                shas[id(it)] = sha
                bar.update(1)
        for it in scanned:
            if id(it) not in shas:
                shas[id(it)] = hash_one(it)
                bar.update(1)
    seen: set[str] = set()
    items, failures = [], []
    for it in scanned:  # scan order, so the first of several identical images wins
        sha = shas[id(it)]
        if isinstance(sha, Exception):
            failures.append({"sha256": "", "path": display_path(it), "status": "unreadable", "count": 0,
                             "error": f"{type(sha).__name__}: {sha}"})
            continue
        if sha in seen:
            continue
        seen.add(sha)
        items.append(ImageItem(it.source, it.ref, display_path(it), json.dumps(it.locator.to_list()), sha))
    return items, failures


def read_image(locator_json: str, sha256: str | None = None) -> np.ndarray:
    """Read through the locator and decode exactly as the dataset build decodes (EXIF
    orientation included), so the masks cached here have the size the build asks for.

    With ``sha256``, bytes that no longer hash to it (the file changed after the scan)
    raise instead of being cached under a key that is not theirs.
    """
    from corruptor.build.decode import decode_image

    data = Locator.from_list(json.loads(locator_json)).read()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("content changed since the job hashed it; run the job again")
    return np.ascontiguousarray(decode_image(data).image)


class MaskWorker:
    """Loads a batch of images, segments them in one call, writes the cache.

    Also the Ray Data callable class: constructed once per actor, so SAM2 loads once.
    """

    def __init__(self, cfg_json: str, masks_root: str):
        self.config = MaskSourceConfig.model_validate_json(cfg_json)
        self.source = make_mask_source(self.config)
        self.cache = MaskCache(Path(masks_root), self.config)

    def process(self, items: list[dict]) -> list[dict]:
        rows: list[dict | None] = [None] * len(items)
        images, slots = [], []
        for i, it in enumerate(items):
            try:
                images.append(read_image(it["locator"], it["sha256"]))
                slots.append(i)
            except Exception as exc:  # any read or decode failure is that image's status, not the job's
                rows[i] = _row(it, "unreadable", 0, f"{type(exc).__name__}: {exc}")
        # Precomputed masks may be keyed by sha256, source/ref, ref or file name.
        keys = [[items[i]["sha256"], f"{items[i]['source']}/{items[i]['ref']}", items[i]["ref"],
                 Path(items[i]["ref"]).name] for i in slots]
        outcomes = self.source.generate(images, keys) if images else []
        for i, image, outcome in zip(slots, images, outcomes):
            it = items[i]
            if isinstance(outcome, MaskError):
                rows[i] = _row(it, outcome.status, 0, str(outcome))
                continue
            self.cache.put(it["sha256"], outcome, image.shape[0], image.shape[1])
            rows[i] = _row(it, "ok", len(outcome), "")
        return rows  # type: ignore[return-value]

    def __call__(self, batch: dict) -> dict:
        n = len(batch["sha256"])
        items = [{k: str(batch[k][i]) for k in ITEM_FIELDS} for i in range(n)]
        rows = self.process(items)
        return {k: [r[k] for r in rows] for k in ("sha256", "path", "status", "count", "error")}


def _row(item: dict, status: str, count: int, error: str) -> dict:
    return {"sha256": item["sha256"], "path": item["path"], "status": status, "count": count, "error": error}


def _batch_size(cfg: MaskSourceConfig) -> int:
    return cfg.sam2.images_per_batch if cfg.kind == "sam2" else 8


# One loaded worker (a model, for SAM2) per process and settings: a runner sends many
# batches to one process, and loading per batch would cost more than segmenting it.
_LOADED: dict[tuple[str, str], MaskWorker] = {}


@dataclass(frozen=True)
class MaskBatch:
    """The runner's worker function: one batch of items (dicts of ITEM_FIELDS) -> their rows."""

    cfg_json: str
    masks_root: str

    def __call__(self, items: list[dict]) -> list[dict]:
        key = (self.cfg_json, self.masks_root)
        if key not in _LOADED:
            _LOADED[key] = MaskWorker(self.cfg_json, self.masks_root)
        return _LOADED[key].process(items)


def runner_settings(cfg: MaskSourceConfig, distributor: str, settings: RunnerSettings | None) -> RunnerSettings:
    """SAM2 on a GPU holds one GPU per Ray worker; everything else runs as it is asked to."""
    settings = settings or RunnerSettings()
    if distributor == "ray" and cfg.kind == "sam2" and cfg.sam2.device != "cpu" and not settings.gpus_per_worker:
        settings = settings.model_copy(update={"gpus_per_worker": 1.0})
    return settings


def run_mask_job(sources: Sequence[SourceSpec] | Mapping[str, str | Path], cfg: MaskSourceConfig, out_dir: Path,
                 distributor: str = "local", progress: bool | str = True, settings: RunnerSettings | None = None
                 ) -> MaskJobReport:
    """Fill ``out_dir/masks`` for every image of ``sources`` (the build's source specs, or
    ``{name: path}``); returns per-status counts. ``distributor`` names a runner
    (`corruptor.run.registry`), ``settings`` its workers, retries and cluster address.
    Raises `MaskError` for unusable mask or runner settings and `SourceError` for an
    unusable source, both before any segmentation."""
    try:
        runner = make_runner(distributor, runner_settings(cfg, distributor, settings))
    except UnknownRunnerError as exc:
        raise ValueError(str(exc)) from None
    validate(cfg)  # bad checkpoint / config fails here, before any image is read
    masks_root = Path(out_dir) / "masks"
    remove_stale_temps(masks_root)  # here, before any worker starts writing
    cache = MaskCache(masks_root, cfg)
    all_items, unreadable = collect(sources, progress=bool(progress))
    report = MaskJobReport(settings_hash=cache.settings_hash, total=len(all_items) + len(unreadable))
    for row in unreadable:
        report.add(row)
    todo = [asdict(it) for it in all_items if not cache.has(it.sha256)]
    report.skipped_cached = len(all_items) - len(todo)
    step = _batch_size(cfg)
    batches = [todo[start:start + step] for start in range(0, len(todo), step)]
    try:
        outcomes = runner.run(batches, MaskBatch(cfg.model_dump_json(), str(masks_root)), progress=progress,
                              desc=f"masks ({cfg.kind})", unit="img") if batches else []
    except RunnerError as exc:
        raise MaskError(f"{exc}; set sam2.device=cpu or use felzenszwalb/slic") from None
    finally:
        _LOADED.clear()   # a later job in this process may come with other files on disk
    for batch, outcome in zip(batches, outcomes):
        for row in outcome.result if outcome.ok else [_row(it, "error", 0, outcome.error) for it in batch]:
            report.add(row)
    _write_report(cache, report)
    return report


def _write_report(cache: MaskCache, report: MaskJobReport) -> None:
    cache.dir.mkdir(parents=True, exist_ok=True)
    path = cache.dir / "job.json"
    doc = {**asdict(report), "config": json.loads(cache.config.model_dump_json())}
    atomic_write(path, json.dumps(doc, indent=2), temp=temp_file(cache.dir, "job"))
