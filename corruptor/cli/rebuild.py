"""`corruptor rebuild`: an old dataset's plan and mask cache, a new recipe, a new folder.

The old dataset's plan.json names the files the rebuild reads; they are read only when the
user restates them (``--source``, ``--sam2-checkpoint``, ``--precomputed-masks``) or passes
``--trust-plan-paths``.
"""
from __future__ import annotations

from pathlib import Path

from corruptor.cli.build import add_run_args, print_report, progress_mode
from corruptor.cli.main import UsageError


def register(sub):
    p = sub.add_parser("rebuild", help="regenerate a dataset with a new recipe (no rescanning, no re-masking)")
    p.add_argument("old", type=Path, metavar="OLD_DIR")
    p.add_argument("--recipe", required=True, help="recipe YAML path or built-in name")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--json", action="store_true")
    g = p.add_argument_group("what the old dataset's plan.json reads (confirmed by you)")
    g.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                   help="restate each source the old build read from disk, as it was given to the build "
                        "(checked against the plan); repeatable")
    g.add_argument("--sam2-checkpoint", default=None,
                   help="the SAM2 checkpoint the old mask settings name (read on a mask-cache miss)")
    g.add_argument("--precomputed-masks", default=None,
                   help="the precomputed masks file the old mask settings name (read on a mask-cache miss)")
    g.add_argument("--trust-plan-paths", action="store_true",
                   help="read every path the old plan.json names without restating them (only for datasets "
                        "you made or trust)")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from corruptor.build.builder import BuildError, rebuild
    from corruptor.sources.sources import SourceError, parse_source_arg

    try:
        sources = [parse_source_arg(s) for s in args.source]
        report = rebuild(args.old, args.recipe, args.out, sources=sources, trust_plan_paths=args.trust_plan_paths,
                         mask_inputs={"--sam2-checkpoint": args.sam2_checkpoint,
                                      "--precomputed-masks": args.precomputed_masks},
                         distributor=args.distributor, workers=args.workers,
                         retries=args.retries, ray_address=args.ray_address, mode=args.mode,
                         retry_failed=args.retry_failed, progress=progress_mode(args),
                         max_failed=args.max_failed)
    except (BuildError, SourceError) as exc:
        raise UsageError(str(exc)) from None
    print_report(report, args.json)
    return 0
