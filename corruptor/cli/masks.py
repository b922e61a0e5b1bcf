"""`corruptor masks`: fill a dataset's mask cache once, before any recipe runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from corruptor.cli.runner_args import add_runner_args, runner_settings
from corruptor.masks.source import FALLBACK_SOURCES, MASK_SOURCE_KINDS


def register(sub) -> None:
    p = sub.add_parser(
        "masks",
        help="compute region masks for source images into DIR/masks (resumable)",
        description="Segment every source image once and cache the masks under --out/masks. "
                    f"Without a SAM2 checkpoint the default source is {FALLBACK_SOURCES[0]} (CPU, no weights).",
    )
    p.add_argument("--source", action="append", required=True, metavar="NAME=PATH",
                   help="the build's sources: folder, .txt/.parquet list, .tar shards (glob), {ref,dis} pair "
                        "folder, embedded:photos or synthetic:ocr[:count]; a :weight suffix is accepted and "
                        "ignored, so a build's --source arguments can be reused as they are; repeatable")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder; masks go to DIR/masks")
    p.add_argument("--mask-source", choices=MASK_SOURCE_KINDS, default=None,
                   help="default: sam2 when --sam2-checkpoint is given, else felzenszwalb")
    add_runner_args(p, "batch")
    g = p.add_argument_group("shared")
    g.add_argument("--min-area", type=float, help="smallest mask: pixels if >= 1, else a fraction of the image")
    g.add_argument("--max-masks", type=int)
    g.add_argument("--max-side", type=int, help="segment at most this long a side (masks come back full size)")
    g = p.add_argument_group("sam2")
    g.add_argument("--sam2-config", help="config inside the sam2 package, e.g. configs/sam2.1/sam2.1_hiera_t.yaml")
    g.add_argument("--sam2-checkpoint", type=Path)
    g.add_argument("--allow-random-weights", action="store_true",
                   help="run SAM2 without a checkpoint (benchmarks and tests only)")
    g.add_argument("--points-per-side", type=int)
    g.add_argument("--points-per-batch", type=int)
    g.add_argument("--images-per-batch", type=int)
    g.add_argument("--pred-iou-thresh", type=float)
    g.add_argument("--stability-score-thresh", type=float)
    g.add_argument("--device", choices=("auto", "cuda", "cpu"))
    g = p.add_argument_group("precomputed")
    g.add_argument("--precomputed", type=Path, metavar="FILE", help="COCO RLE masks in .parquet or .json")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def parse_sources(specs: list[str]):
    """``--source`` values parsed exactly as ``corruptor build`` parses them (list of `SourceSpec`)."""
    from corruptor.cli.main import UsageError
    from corruptor.sources.sources import SourceError, parse_source_arg

    try:
        return [parse_source_arg(spec) for spec in specs]
    except SourceError as exc:
        raise UsageError(str(exc)) from None


def config_from_args(args: argparse.Namespace):
    """Only flags the user gave override the typed defaults."""
    from pydantic import ValidationError

    from corruptor.cli.main import UsageError
    from corruptor.masks.source import MaskSourceConfig
    from maa_format.errors import describe_validation_error

    kind = args.mask_source or ("sam2" if args.sam2_checkpoint else FALLBACK_SOURCES[0])
    sam2 = {k: v for k, v in {
        "config": args.sam2_config, "checkpoint": args.sam2_checkpoint,
        "points_per_side": args.points_per_side, "points_per_batch": args.points_per_batch,
        "images_per_batch": args.images_per_batch, "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh, "device": args.device,
    }.items() if v is not None}
    if args.allow_random_weights:
        sam2["allow_random_weights"] = True
    doc = {k: v for k, v in {"kind": kind, "min_area": args.min_area, "max_masks": args.max_masks,
                             "max_side": args.max_side, "precomputed_path": args.precomputed}.items() if v is not None}
    try:
        return MaskSourceConfig(**doc, sam2=sam2)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc, "invalid mask settings")) from None


def run(args: argparse.Namespace) -> int:
    from corruptor.cli.build import progress_mode
    from corruptor.cli.main import UsageError
    from corruptor.masks.job import run_mask_job
    from corruptor.masks.source import MaskError
    from corruptor.sources.sources import SourceError

    sources = parse_sources(args.source)
    cfg = config_from_args(args)
    try:
        report = run_mask_job(sources, cfg, args.out, distributor=args.distributor, progress=progress_mode(args),
                              settings=runner_settings(args))
    except (MaskError, SourceError) as exc:
        raise UsageError(str(exc)) from None
    done = ", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items())) or "nothing to do"
    print(f"masks {cfg.kind} [{report.settings_hash}] in {Path(args.out) / 'masks'}: {report.total} images, "
          f"{report.skipped_cached} already cached; {done}")
    for row in report.failures[:10]:
        print(f"  {row['status']}: {row['path']}: {row['error']}")
    if len(report.failures) > 10:
        print(f"  ... {len(report.failures) - 10} more in {Path(args.out) / 'masks' / report.settings_hash / 'job.json'}")
    return 0
