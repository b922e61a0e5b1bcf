"""The mask stage at scale: fill a dataset's mask cache for every source image.

Reader (list + hash files), worker (`MaskWorker`: load, segment, write the cache) and two
distributors with one signature: ``local`` (in-process, for small runs and tests) and
``ray`` (Ray Data; SAM2 as an actor pool with one GPU per actor, scikit-image sources as
CPU tasks). Images already in the cache are skipped before anything is scheduled, so a
stopped job resumes where it left off.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np

from corruptor.mask_cache import MaskCache
from corruptor.mask_source import MaskError, MaskSourceConfig, make_mask_source, validate
from corruptor.writer import file_sha256

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
Distributor = Literal["local", "ray"]


@dataclass(frozen=True)
class ImageItem:
    source: str
    path: str  # absolute
    relpath: str  # inside its source folder, '/'-separated
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


def list_images(folder: Path) -> list[Path]:
    """Image files under a folder, recursively, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder '{folder}' does not exist")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def collect(sources: dict[str, Path]) -> list[ImageItem]:
    """All images of all sources; one item per distinct content (sha256)."""
    seen: set[str] = set()
    items = []
    for name, folder in sources.items():
        for p in list_images(folder):
            sha = file_sha256(p)
            if sha in seen:
                continue
            seen.add(sha)
            items.append(ImageItem(name, str(p.resolve()), p.relative_to(folder).as_posix(), sha))
    return items


def load_image(path: str) -> np.ndarray:
    """Decoded exactly as the dataset build decodes (EXIF orientation included), so the
    masks cached here have the size the build asks for."""
    from corruptor.decode import decode_image

    return np.ascontiguousarray(decode_image(Path(path).read_bytes()).image)


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
                images.append(load_image(it["path"]))
                slots.append(i)
            except Exception as exc:  # any decoder failure is that image's status, not the job's
                rows[i] = _row(it, "unreadable", 0, f"{type(exc).__name__}: {exc}")
        keys = [[items[i]["sha256"], f"{items[i]['source']}/{items[i]['relpath']}", items[i]["relpath"],
                 Path(items[i]["relpath"]).name] for i in slots]
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
        items = [{k: str(batch[k][i]) for k in ("source", "path", "relpath", "sha256")} for i in range(n)]
        rows = self.process(items)
        return {k: [r[k] for r in rows] for k in ("sha256", "path", "status", "count", "error")}


def _row(item: dict, status: str, count: int, error: str) -> dict:
    return {"sha256": item["sha256"], "path": item["path"], "status": status, "count": count, "error": error}


def _batch_size(cfg: MaskSourceConfig) -> int:
    return cfg.sam2.images_per_batch if cfg.kind == "sam2" else 8


def run_local(items: list[dict], cfg: MaskSourceConfig, masks_root: Path, on_rows: Callable[[list[dict]], None]) -> None:
    worker = MaskWorker(cfg.model_dump_json(), str(masks_root))
    step = _batch_size(cfg)
    for start in range(0, len(items), step):
        on_rows(worker.process(items[start:start + step]))


def run_ray(items: list[dict], cfg: MaskSourceConfig, masks_root: Path, on_rows: Callable[[list[dict]], None],
            ray_init: dict | None = None, num_gpus: int | None = None) -> None:
    """Ray Data job; ``ray.init()`` starts a local cluster unless RAY_ADDRESS names one.

    The cache folder must be on storage every node can write (a local path for a local cluster).
    """
    import ray

    if not ray.is_initialized():
        ray.init(**{"log_to_driver": False, **(ray_init or {})})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the command prints one bar of its own
    ds = ray.data.from_items(items)
    kwargs = {"cfg_json": cfg.model_dump_json(), "masks_root": str(masks_root)}
    if cfg.kind == "sam2" and cfg.sam2.device != "cpu":
        gpus = num_gpus if num_gpus is not None else int(ray.cluster_resources().get("GPU", 0))
        if gpus < 1:
            raise MaskError("the Ray cluster has no GPU for SAM2; set sam2.device=cpu or use felzenszwalb/slic")
        out = ds.map_batches(MaskWorker, fn_constructor_kwargs=kwargs, batch_size=_batch_size(cfg),
                             num_gpus=1, concurrency=gpus, batch_format="numpy")
    else:
        # CPU sources: one actor per CPU keeps the model/settings load per process, not per batch.
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        out = ds.map_batches(MaskWorker, fn_constructor_kwargs=kwargs, batch_size=_batch_size(cfg),
                             num_cpus=1, concurrency=(1, cpus), batch_format="numpy")
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        n = len(batch["sha256"])
        on_rows([{k: (int(batch[k][i]) if k == "count" else str(batch[k][i])) for k in batch} for i in range(n)])


def run_mask_job(sources: dict[str, Path], cfg: MaskSourceConfig, out_dir: Path, distributor: Distributor = "local",
                 progress: bool = True, ray_init: dict | None = None) -> MaskJobReport:
    """Fill ``out_dir/masks`` for every image of ``sources``; returns per-status counts."""
    validate(cfg)  # bad checkpoint / config fails here, before any image is read
    masks_root = Path(out_dir) / "masks"
    cache = MaskCache(masks_root, cfg)
    all_items = collect(sources)
    report = MaskJobReport(settings_hash=cache.settings_hash, total=len(all_items))
    todo = [asdict(it) for it in all_items if not cache.has(it.sha256)]
    report.skipped_cached = len(all_items) - len(todo)
    if todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"masks ({cfg.kind})", unit="img", disable=not progress)

        def on_rows(rows: Iterable[dict]) -> None:
            rows = list(rows)
            for r in rows:
                report.add(r)
            bar.update(len(rows))

        try:
            if distributor == "local":
                run_local(todo, cfg, masks_root, on_rows)
            elif distributor == "ray":
                run_ray(todo, cfg, masks_root, on_rows, ray_init=ray_init)
            else:
                raise ValueError(f"unknown distributor '{distributor}'; allowed: local, ray")
        finally:
            bar.close()
    _write_report(cache, report)
    return report


def _write_report(cache: MaskCache, report: MaskJobReport) -> None:
    cache.dir.mkdir(parents=True, exist_ok=True)
    path = cache.dir / "job.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**asdict(report), "config": json.loads(cache.config.model_dump_json())}, indent=2))
    os.replace(tmp, path)
