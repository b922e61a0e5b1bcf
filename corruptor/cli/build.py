"""`corruptor build`: sources + recipe -> WebDataset shards with manifests (resumable)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from corruptor.cli.main import UsageError

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


def int_at_least(low: int):
    """argparse type: an integer >= ``low``; a bad value is one usage line naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def add_run_args(p) -> None:
    p.add_argument("--distributor", default="local", choices=("local", "ray"))
    p.add_argument("--workers", type=int_at_least(1), default=1, help="parallel shard workers (processes or Ray tasks)")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: RAY_ADDRESS, else local)")
    p.add_argument("--retries", type=int_at_least(0), default=2, help="attempts per failed shard after the first")
    p.add_argument("--mode", default="resume", choices=("resume", "overwrite"))
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun done shards whose samples failed transiently (I/O, memory)")
    p.add_argument("--no-progress", action="store_true")


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
    from corruptor.build.builder import BuildConfig, BuildError, build
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
                          mask_source=mask_settings(args), progress=not args.no_progress and sys.stderr.isatty())
        report = build(cfg)
    except (SourceError, BuildError) as exc:
        raise UsageError(str(exc)) from None
    print_report(report, args.json)
    return 0


def print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    print(f"{report.out}: {report.ok} pairs in {report.shards} shard(s) "
          f"({report.shards_run} run, {report.shards_resumed} already done); "
          f"failed {report.failed}, skipped {report.skipped}; {report.seconds:.1f} s"
          + (f", {report.pairs_per_s:.1f} pairs/s" if report.shards_run else "")
          + (f"; removed {report.removed_partials} temp file(s) of an interrupted run"
             if report.removed_partials else ""))
