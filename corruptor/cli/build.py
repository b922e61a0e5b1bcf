"""`corruptor build`: sources + recipe -> WebDataset shards with manifests (resumable)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from corruptor.cli.main import UsageError
from corruptor.cli.runner_args import add_runner_args, int_at_least

DEMO_TARGET = 48
DEMO_OCR_PAGES = 12
DEMO_SIZE = 256


def add_mask_args(p) -> None:
    g = p.add_argument_group("masks (recipes with a local section)")
    g.add_argument("--mask-source", default=None, choices=("felzenszwalb", "slic", "sam2", "precomputed"),
                   help="region source for local ops (default felzenszwalb: CPU, no weights)")
    g.add_argument("--sam2-config", default=None, help="SAM2 model config, e.g. configs/sam2.1/sam2.1_hiera_t.yaml")
    g.add_argument("--sam2-checkpoint", default=None, help="SAM2 checkpoint path")
    g.add_argument("--precomputed-masks", default=None, help="COCO RLE masks (.parquet or .json)")
    g.add_argument("--mask-max-side", type=int_at_least(16), default=None,
                   help="segment at most this many pixels on the long side (default 1024); "
                        "felzenszwalb at 512 is several times faster")


def mask_settings(args) -> dict | None:
    max_side = getattr(args, "mask_max_side", None)
    if args.mask_source is None and max_side is None and not (
            args.sam2_checkpoint or args.sam2_config or args.precomputed_masks):
        return None
    if args.mask_source:
        kind = args.mask_source
    elif args.sam2_checkpoint or args.sam2_config:
        kind = "sam2"
    else:
        kind = "precomputed" if args.precomputed_masks else "felzenszwalb"
    cfg: dict = {"kind": kind}
    if max_side is not None:
        cfg["max_side"] = max_side
    if kind == "sam2":
        sam2 = {}
        if args.sam2_config:
            sam2["config"] = args.sam2_config
        if args.sam2_checkpoint:
            sam2["checkpoint"] = args.sam2_checkpoint
        cfg["sam2"] = sam2
    if kind == "precomputed":
        cfg["precomputed_path"] = args.precomputed_masks
    return cfg


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 1.0:   # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


fraction.__name__ = "fraction in [0, 1]"


def add_run_args(p) -> None:
    add_runner_args(p, "shard")
    p.add_argument("--mode", default="resume", choices=("resume", "overwrite"))
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun done shards whose samples failed transiently (I/O, memory)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--max-failed", type=fraction, default=0.05,
                   help="fail the build when more than this fraction of samples failed (default 0.05); "
                        "failed samples are not replaced, the summary says how far the target was missed")


def register(sub):
    p = sub.add_parser("build", help="build clean/degraded pairs into WebDataset shards",
                       description="Build a dataset; run the same command again to resume.")
    p.add_argument("--demo", action="store_true",
                   help="embedded photos + synthetic OCR pages, maa-paper recipe, small target")
    p.add_argument("--recipe", help="recipe YAML path or built-in name (maa-global, maa-paper, ...)")
    p.add_argument("--source", action="append", default=[], metavar="NAME=PATH[:weight]",
                   help="folder, .txt/.parquet list, .tar shards (glob), {ref,dis} pair folder, "
                        "embedded:photos, synthetic:ocr[:count] or pdf:FOLDER[?dpi=100&max_pages=N] (pages of every "
                        "PDF below FOLDER); repeat for several")
    p.add_argument("--source-kind", action="append", default=[], metavar="NAME=KIND", help="photo, web or ocr")
    p.add_argument("--target", type=int_at_least(1), help="number of pairs to plan")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int_at_least(1), default=None,
                   help="samples per shard (default 256; 16 with --demo)")
    p.add_argument("--variants", type=int_at_least(1), default=None,
                   help="max degraded variants per image (default: as needed)")
    p.add_argument("--crops", type=int_at_least(1), default=1,
                   help="random crops per variant (recipe output.crop: random)")
    p.add_argument("--json", action="store_true", help="print the build report as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the plan (per source: images, variants, crops, pairs); "
                        "write nothing")
    add_run_args(p)
    add_mask_args(p)
    p.set_defaults(func=run)


def _demo_recipe():
    from corruptor.recipe.recipe import builtin_recipe, builtin_recipes

    name = "maa-paper" if "maa-paper" in builtin_recipes() else "maa-global"
    recipe = builtin_recipe(name).to_dict()
    recipe["output"] = {**recipe.get("output", {}), "size": DEMO_SIZE, "crop": "center"}
    return recipe


def run(args) -> int:
    from corruptor.build.builder import BuildConfig, BuildError, build, dry_run
    from corruptor.sources.sources import SourceError, demo_sources, parse_kind_arg, parse_source_arg

    try:
        if args.demo:
            if args.source or args.recipe:
                raise UsageError("--demo builds from embedded images; drop --source/--recipe or drop --demo")
            specs = demo_sources(DEMO_OCR_PAGES)
            recipe = _demo_recipe()
            target = args.target or DEMO_TARGET
            shard_size = args.shard_size or 16
        else:
            if not args.recipe:
                raise UsageError("--recipe is required (or use --demo)")
            if not args.source:
                raise UsageError("at least one --source NAME=PATH[:weight] is required (or use --demo)")
            if args.target is None:
                raise UsageError("--target N (number of pairs) is required")
            kinds = dict(parse_kind_arg(k) for k in args.source_kind)
            specs = [parse_source_arg(s, kinds) for s in args.source]
            unknown = sorted(set(kinds) - {s.name for s in specs})
            if unknown:
                raise UsageError(f"--source-kind names unknown source(s): {', '.join(unknown)}")
            recipe, target, shard_size = args.recipe, args.target, args.shard_size or 256
        cfg = BuildConfig(recipe=recipe, sources=specs, out=args.out, target=target, seed=args.seed,
                          shard_size=shard_size, variants=args.variants, crops=args.crops,
                          distributor=args.distributor, workers=args.workers, retries=args.retries,
                          ray_address=args.ray_address, mode=args.mode, retry_failed=args.retry_failed,
                          mask_source=mask_settings(args), progress=progress_mode(args),
                          max_failed=args.max_failed)
        if args.dry_run:
            return print_dry_run(dry_run(cfg), args.json)
        report = build(cfg)
    except (SourceError, BuildError) as exc:
        raise UsageError(str(exc)) from None
    print_report(report, args.json)
    return 0


def print_dry_run(result, as_json: bool) -> int:
    from corruptor.build.plan_summary import format_table, to_dicts

    if as_json:
        print(json.dumps({"target": result.plan.target, "shards": len(result.plan.shards),
                          "sources": to_dicts(result.lines), "warnings": result.warnings}, indent=2))
        return 0
    print(format_table(result.lines))
    print(f"{result.plan.target} pairs in {len(result.plan.shards)} shard(s) of {result.plan.shard_size}; "
          "dry run: nothing written")
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    return 0


def progress_mode(args) -> str | bool:
    """A bar on a terminal; periodic one-line reports in a log (stderr redirected); or nothing."""
    if args.no_progress:
        return False
    return True if sys.stderr.isatty() else "log"


def print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    if report.damaged_shards:
        print(f"redid {len(report.damaged_shards)} finished shard(s) whose tar did not match its done marker: "
              f"{', '.join(report.damaged_shards)}", file=sys.stderr)
    if report.shortfall:
        print(f"target {report.target} not reached: {report.shortfall} pair(s) short "
              f"({report.failed} failed, {report.skipped} skipped; failed samples are not replaced)",
              file=sys.stderr)
    print(f"{report.out}: {report.ok} pairs in {report.shards} shard(s) "
          f"({report.shards_run} run, {report.shards_resumed} already done); "
          f"failed {report.failed}, skipped {report.skipped}; {report.seconds:.1f} s"
          + (f", {report.pairs_per_s:.1f} pairs/s" if report.shards_run else "")
          + (f"; removed {report.removed_partials} temp file(s) of an interrupted run"
             if report.removed_partials else ""))
