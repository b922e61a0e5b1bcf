"""Build a dataset: validate, plan, run shards (resumably), and write ``dataset.json``.

Folder layout (the contract in DESIGN.md):

    DIR/plan.json                 sources, items and the sample -> shard assignment
    DIR/shards/NNNNNN.tar         WebDataset samples (clean, degraded, mask.png, json)
    DIR/shards/NNNNNN.parquet     one manifest row per planned sample, failures included
    DIR/shards/NNNNNN.stats.json  the shard's done marker, written last
    DIR/masks/                    mask cache (only when the recipe has local ops)
    DIR/dataset.json              written when every shard is done

Everything that can be wrong with the inputs is checked before the first shard runs.
A resumed build re-plans, checks the plan is the same as the one on disk, and runs
only shards without a done marker, so the result is byte-identical to one run.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from corruptor.build.config import DEFAULT_MAX_FAILED, MODES, BuildConfig, BuildError, BuildReport
from corruptor.build.planner import Plan, PlanError, anchor_paths, anchor_sources, plan
from corruptor.build.rebuild_inputs import check_plan_sources, confirm_mask_inputs, confirm_sources, share_mask_cache
from corruptor.build.worker import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, ShardTask, WorkerConfig, process_shard
from corruptor.build.writer import file_sha256, read_stats, remove_partials
from corruptor.ops.registry import load_all
from corruptor.run.registry import make_runner
from corruptor.sources.sources import SourceError, SourceSpec, scan_sources
from maa_format.dataset_files import DatasetFileError, read_dataset, read_plan
from maa_format.io import atomic_write, canonical_json
from maa_format.layout import (DATASET_FILE, FORMAT, MASKS_DIR, PLAN_FILE, SHARDS_DIR, FormatError, ShardPaths,
                               shard_name)
from maa_format.paths import UnsafePathError, check_inside

# The settings and the report live in corruptor.build.config; callers import them from here too.
__all__ = ["DEFAULT_MAX_FAILED", "MODES", "BuildConfig", "BuildError", "BuildReport", "DryRun", "build",
           "dry_run", "load_dataset", "load_plan", "make_plan", "rebuild"]
log = logging.getLogger(__name__)


def code_version() -> str:
    try:
        return metadata.version("maa-toolkit")
    except metadata.PackageNotFoundError:
        return "unknown"


def _load_recipe(recipe: Any):
    from corruptor.recipe.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe)
    except RecipeError as exc:
        raise BuildError(str(exc)) from None


def _mask_config(recipe, mask_source: Any) -> dict[str, Any] | None:
    if not recipe.needs_masks:
        return None
    from corruptor.masks.source import MaskSourceConfig

    if mask_source is None:
        cfg = MaskSourceConfig()
    elif isinstance(mask_source, MaskSourceConfig):
        cfg = mask_source
    else:
        from pydantic import ValidationError

        from maa_format.errors import describe_validation_error

        try:
            cfg = MaskSourceConfig.model_validate(dict(mask_source))
        except ValidationError as exc:
            raise BuildError(describe_validation_error(exc, "mask source settings")) from None
        except (TypeError, ValueError) as exc:   # not a mapping at all
            raise BuildError(f"mask source settings: {exc}") from None
    from corruptor.masks.registry import validate
    from corruptor.masks.source import MaskError

    try:
        validate(cfg)
    except MaskError as exc:
        raise BuildError(f"mask source: {exc}") from None
    return cfg.model_dump(mode="json")


def _check_crops(cfg: BuildConfig, recipe) -> None:
    if cfg.crops > 1 and recipe.output.crop != "random":
        raise BuildError(f"crops={cfg.crops} needs the recipe's output.crop to be 'random' "
                         f"(it is '{recipe.output.crop}'): other crops would repeat the same pixels")


def _prepare_out(out: Path, mode: str, new_plan: Plan, fingerprint: dict[str, Any]) -> None:
    plan_path = out / PLAN_FILE
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} exists and is not a folder")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise BuildError(f"--out {out}: {blocker} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not plan_path.exists() and not (out / SHARDS_DIR).exists():
        if set(p.name for p in out.iterdir()) - {MASKS_DIR}:
            raise BuildError(f"--out {out} is not empty and holds no dataset; choose a new or empty folder")
    if mode == "overwrite":
        for name in (DATASET_FILE, PLAN_FILE):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / SHARDS_DIR, ignore_errors=True)   # the mask cache stays: it is keyed by content
    elif plan_path.exists():
        try:
            old = read_plan(plan_path)
        except DatasetFileError as exc:
            raise BuildError(f"--out {out}: {exc}; use --mode overwrite to replace it "
                             "or choose another --out") from None
        old_fp = old.get("build", {})
        diffs = [k for k in sorted(set(fingerprint) | set(old_fp)) if fingerprint.get(k) != old_fp.get(k)]
        old_plan = Plan.from_dict(old["plan"])
        # A plan written before paths were stored absolute holds them as typed, relative to
        # the folder the build ran in: the resume of such a build runs from there too.
        same = new_plan.hash in (old_plan.hash, anchor_paths(old_plan, os.getcwd()).hash)
        if diffs or not same:
            what = ", ".join(diffs) or "sources (files added, removed or renamed)"
            raise BuildError(f"--out {out} holds a build with different settings ({what}); "
                             "use --mode overwrite to replace it or choose another --out")
    try:
        (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None
    if not plan_path.exists():
        # ASCII JSON: a file name that is not UTF-8 is kept exactly (as an escaped surrogate).
        atomic_write(plan_path, canonical_json({"build": fingerprint, "plan": new_plan.to_dict()}, ascii=True))


def _fingerprint(cfg: BuildConfig, recipe, mask_cfg: dict | None) -> dict[str, Any]:
    return {"recipe_hash": recipe.hash, "seed": cfg.seed, "target": cfg.target, "shard_size": cfg.shard_size,
            "variants": cfg.variants, "crops": cfg.crops, "mask_source": mask_cfg,
            "max_pixels": cfg.max_pixels, "min_side": cfg.min_side}


def make_plan(cfg: BuildConfig) -> Plan:
    if cfg.plan_override is not None:
        return cfg.plan_override
    try:
        return plan(scan_sources(cfg.sources), cfg.target, cfg.seed, cfg.shard_size, cfg.variants, cfg.crops)
    except (SourceError, PlanError) as exc:
        raise BuildError(str(exc)) from None


@dataclass
class DryRun:
    plan: Plan
    lines: list                          # plan_summary.SourceLine per source
    warnings: list[str]


def _checked_inputs(cfg: BuildConfig) -> tuple[Any, dict[str, Any] | None, Plan]:
    """Every check a build makes before its first shard: (recipe, mask settings, plan)."""
    cfg.check()
    recipe = _load_recipe(cfg.recipe)
    _check_crops(cfg, recipe)
    mask_cfg = _mask_config(recipe, cfg.mask_source)
    return recipe, mask_cfg, make_plan(cfg)


def dry_run(cfg: BuildConfig) -> DryRun:
    """Every check a build makes before its first shard, and the plan it would run; writes nothing."""
    from corruptor.build.plan_summary import plan_warnings, summarize

    _, _, the_plan = _checked_inputs(cfg)
    lines = summarize(the_plan)
    return DryRun(the_plan, lines, plan_warnings(lines))


def build(cfg: BuildConfig) -> BuildReport:
    """Run (or resume) a build. Raises ``BuildError`` before work on bad input, after
    work when shards failed (the others are kept; run again to resume)."""
    from corruptor.build.plan_summary import plan_warnings, summarize

    start = time.perf_counter()
    out = Path(cfg.out)
    recipe, mask_cfg, the_plan = _checked_inputs(cfg)
    plan_notes = plan_warnings(summarize(the_plan))
    for note in plan_notes:   # before any work: the user can still stop and change the target
        log.warning(note)
    fingerprint = _fingerprint(cfg, recipe, mask_cfg)
    _prepare_out(out, cfg.mode, the_plan, fingerprint)
    removed = _remove_leftovers(out, mask_cfg)
    runner = make_runner(cfg.distributor, cfg.runner_settings())
    wcfg = _worker_config(cfg, recipe, mask_cfg, the_plan, single_process=runner.single_process)
    tasks, resumed, damaged = _pending_shards(out, the_plan, wcfg, cfg.retry_failed)
    outcomes = runner.run(tasks, process_shard, progress=cfg.progress) if tasks else []
    failed_shards = {shard_name(tasks[o.index].index): o.error for o in outcomes if not o.ok}
    totals, shard_list = _done_shards(out, len(the_plan.shards))
    report = BuildReport(out=out, shards=len(the_plan.shards), shards_run=len(tasks), shards_resumed=resumed,
                         seconds=time.perf_counter() - start, failed_shards=failed_shards,
                         removed_partials=len(removed), ok_run=sum(o.result.ok for o in outcomes if o.ok),
                         target=the_plan.target, damaged_shards=damaged, warnings=plan_notes, **totals)
    if failed_shards:
        first = next(iter(failed_shards.items()))
        raise BuildError(f"{len(failed_shards)} shard(s) failed after {cfg.retries} retries "
                         f"(first: {first[0]}: {first[1]}); the others are kept, run the same command to resume")
    check_failures(out, report, cfg.max_failed)
    write_dataset_json(out, recipe, the_plan, fingerprint, {**totals, "shortfall": report.shortfall}, shard_list,
                       max_failed=cfg.max_failed)
    return report


def _remove_leftovers(out: Path, mask_cfg: dict[str, Any] | None) -> list:
    """An interrupted run's temp files (the driver's job: workers cannot tell whose a temp file
    is) and the old dataset.json, which is written again when every shard is done."""
    removed = remove_partials(out / SHARDS_DIR)
    if mask_cfg:
        from corruptor.masks.cache import remove_stale_temps

        remove_stale_temps(out / MASKS_DIR)
    (out / DATASET_FILE).unlink(missing_ok=True)
    return removed


def _worker_config(cfg: BuildConfig, recipe, mask_cfg: dict[str, Any] | None, the_plan: Plan,
                   single_process: bool) -> WorkerConfig:
    out = Path(cfg.out)
    return WorkerConfig(out_dir=str(out), recipe=recipe.to_dict(), recipe_hash=recipe.hash, seed=cfg.seed,
                        mask_source=mask_cfg, mask_root=str(out / MASKS_DIR) if mask_cfg else None,
                        max_pixels=cfg.max_pixels, min_side=cfg.min_side,
                        # parallel workers share the cores: one OpenCV thread each
                        cv2_threads=None if single_process else 1,
                        source_kinds={src["name"]: src["kind"] for src in the_plan.sources})


def _pending_shards(out: Path, the_plan: Plan, wcfg: WorkerConfig,
                    retry_failed: bool) -> tuple[list[ShardTask], int, list[str]]:
    """(tasks for the shards without a trusted done marker, shards resumed, damaged shards redone)."""
    tasks, resumed, damaged = [], 0, []
    for index, shard in enumerate(the_plan.shards):
        paths = ShardPaths.of(out / SHARDS_DIR, index)
        stats = read_stats(paths.stats)
        if stats is not None and shard_damage(paths, stats) is not None:
            damaged.append(shard_name(index))   # a marker is only trusted with the bytes it describes
            paths.stats.unlink()
            stats = None
        if stats is not None and retry_failed and stats.get("transient_failures", 0) > 0:
            paths.stats.unlink()
            stats = None
        if stats is not None:
            resumed += 1
            continue
        samples = [(s.key, the_plan.items[s.item], s.variant, s.crop) for s in shard]
        tasks.append(ShardTask(index, samples, wcfg))
    return tasks, resumed, damaged


def _done_shards(out: Path, count: int) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """(row counts over the done shards, their dataset.json entries)."""
    totals = {"rows": 0, "ok": 0, "failed": 0, "skipped": 0}
    shard_list = []
    for index in range(count):
        stats = read_stats(ShardPaths.of(out / SHARDS_DIR, index).stats)
        if stats is None:
            continue
        for k in totals:
            totals[k] += int(stats.get(k, 0))
        shard_list.append({"name": shard_name(index), "tar": f"shards/{shard_name(index)}.tar",
                           "manifest": f"shards/{shard_name(index)}.parquet", "samples": stats["ok"],
                           "rows": stats["rows"], "tar_sha256": stats["tar_sha256"]})
    return totals, shard_list


def shard_damage(paths: ShardPaths, stats: dict[str, Any]) -> str | None:
    """Why a done shard's files do not match its marker (None: they do). Size first (cheap),
    then the sha256 the writer recorded, so a truncated or edited tar is redone, not trusted."""
    if not paths.manifest.is_file():
        return "manifest missing"
    try:
        size = paths.tar.stat().st_size
    except OSError:
        return "tar missing"
    if "tar_bytes" in stats and size != stats["tar_bytes"]:
        return f"tar has {size} bytes, the marker says {stats['tar_bytes']}"
    if stats.get("tar_sha256") and file_sha256(paths.tar) != stats["tar_sha256"]:
        return "tar sha256 differs from the marker's"
    return None


def check_failures(out: Path, report: BuildReport, max_failed: float) -> None:
    """No dataset.json for a build with no pairs, or with more failed samples than allowed;
    the shards stay, so ``--max-failed`` can be raised and the same command rerun at no cost."""
    if report.ok == 0:
        raise BuildError(f"{out}: no pairs were made ({report.failed} failed, {report.skipped} skipped of "
                         f"{report.rows}); see the 'error' column of shards/*.parquet or `corruptor stats {out}`")
    if report.failed_fraction > max_failed:
        raise BuildError(f"{out}: {report.failed} of {report.rows} samples failed ({report.failed_fraction:.1%}), "
                         f"more than --max-failed {max_failed:g}; see `corruptor stats {out}` for the reasons, "
                         f"or rerun with a higher --max-failed to accept them (finished shards are kept)")


def write_dataset_json(out: Path, recipe, the_plan: Plan, fingerprint: dict[str, Any],
                       totals: dict[str, int], shard_list: list[dict[str, Any]],
                       max_failed: float = DEFAULT_MAX_FAILED) -> None:
    doc = {
        "format": FORMAT,
        "code_version": code_version(),
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash,
        "seed": the_plan.seed,
        "target": the_plan.target,
        "shard_size": the_plan.shard_size,
        "image_format": recipe.output.format,
        "counts": {**totals, "shards": len(shard_list), "pairs": totals["ok"]},
        # Failed and skipped samples are not replaced: counts.shortfall pairs are missing from the target.
        "max_failed": max_failed,
        "sources": the_plan.sources,
        "quotas": the_plan.quotas,
        "mask_source": fingerprint.get("mask_source"),
        "plan": PLAN_FILE,
        "plan_hash": the_plan.hash,
        "shards": shard_list,
        # The op -> family table readers group by (maa-eval), so they need no op registry.
        "op_families": {name: op.family for name, op in load_all().items()},
    }
    atomic_write(out / DATASET_FILE, canonical_json(doc, ascii=True))   # ASCII: any source path fits


def load_dataset(path: str | Path) -> dict[str, Any]:
    p = Path(path) / DATASET_FILE
    if not p.is_file():
        raise BuildError(f"{path} has no {DATASET_FILE}: not a finished dataset (run build again to finish it)")
    try:
        check_inside(p, path, DATASET_FILE)
        return read_dataset(path)  # format version and schema checked
    except (DatasetFileError, FormatError, UnsafePathError) as exc:
        raise BuildError(str(exc)) from None


def load_plan(path: str | Path) -> tuple[Plan, dict[str, Any]]:
    p = Path(path) / PLAN_FILE
    if not Path(path).is_dir():
        raise BuildError(f"{path} does not exist or is not a folder")
    if not p.is_file():
        raise BuildError(f"{path} has no {PLAN_FILE}: not a dataset built by corruptor")
    try:
        doc = read_plan(check_inside(p, path, PLAN_FILE))  # schema-checked before any field is used
        return Plan.from_dict(doc["plan"]), doc.get("build", {})
    except (DatasetFileError, UnsafePathError, PlanError) as exc:
        raise BuildError(str(exc)) from None


def rebuild(old_dir: str | Path, recipe: Any, out_dir: str | Path, *, sources: list[SourceSpec] | None = None,
            mask_inputs: dict[str, str | Path | None] | None = None, trust_plan_paths: bool = False,
            **overrides: Any) -> BuildReport:
    """Regenerate ``old_dir`` with another recipe: same plan (keys, shards, source items),
    same seed and mask settings; the old mask cache is linked (or copied) in, so no image
    is segmented again and no source is rescanned.

    The dataset may come from anyone, so the paths its plan.json names are read only when
    the user confirms them: every source read from disk restated in ``sources`` (same name
    and path), and the SAM2 checkpoint or precomputed masks the plan's mask settings read on
    a cache miss in ``mask_inputs`` (``{"--sam2-checkpoint": path, "--precomputed-masks":
    path}``), unless ``trust_plan_paths``."""
    old_dir, out_dir = Path(old_dir), Path(out_dir)
    if old_dir.resolve() == out_dir.resolve():
        raise BuildError("rebuild needs a new --out folder, not the old dataset's")
    _load_recipe(recipe)  # a bad recipe fails before anything is written
    old_plan, old_fp = load_plan(old_dir)
    old_ds = load_dataset(old_dir)  # only finished datasets are rebuilt
    # An old plan's relative paths (written before paths were stored absolute) are read from
    # the dataset's folder; dataset.json's copy of the sources is anchored the same way.
    base = old_dir.resolve()
    old_plan = anchor_paths(old_plan, base)
    mask_source = overrides.pop("mask_source", None)
    try:  # the plan reads only inside its declared sources; the mask cache holds only regular files
        declared = old_ds.get("sources")
        specs = check_plan_sources(old_plan, None if declared is None else anchor_sources(declared, base),
                                   str(old_dir / PLAN_FILE))
        if not trust_plan_paths:   # and only where the user says it may
            confirm_sources(old_plan.sources, sources or [], str(old_dir / PLAN_FILE))
            if mask_source is None:
                confirm_mask_inputs(old_fp.get("mask_source"), mask_inputs or {}, str(old_dir / PLAN_FILE))
        share_mask_cache(old_dir, out_dir / MASKS_DIR)
    except (DatasetFileError, UnsafePathError) as exc:
        raise BuildError(str(exc)) from None
    cfg = BuildConfig(recipe=recipe, sources=specs, out=out_dir, target=old_plan.target, seed=old_plan.seed,
                      shard_size=old_plan.shard_size, variants=old_fp.get("variants"), crops=old_fp.get("crops", 1),
                      mask_source=mask_source or old_fp.get("mask_source"),
                      max_pixels=old_fp.get("max_pixels", DEFAULT_MAX_PIXELS),
                      min_side=old_fp.get("min_side", DEFAULT_MIN_SIDE), plan_override=old_plan, **overrides)
    return build(cfg)
