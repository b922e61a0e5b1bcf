"""`corruptor rebuild`: an old dataset's plan and mask cache, a new recipe, a new folder."""
from __future__ import annotations

from pathlib import Path

from corruptor.cli.main import UsageError
from corruptor.cli.build import add_run_args, print_report, progress_mode


def register(sub):
    p = sub.add_parser("rebuild", help="regenerate a dataset with a new recipe (no rescanning, no re-masking)")
    p.add_argument("old", type=Path, metavar="OLD_DIR")
    p.add_argument("--recipe", required=True, help="recipe YAML path or built-in name")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--json", action="store_true")
    add_run_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from corruptor.build.builder import BuildError, rebuild

    try:
        report = rebuild(args.old, args.recipe, args.out, distributor=args.distributor, workers=args.workers,
                         retries=args.retries, ray_address=args.ray_address, mode=args.mode,
                         retry_failed=args.retry_failed, progress=progress_mode(args),
                         max_failed=args.max_failed)
    except BuildError as exc:
        raise UsageError(str(exc)) from None
    print_report(report, args.json)
    return 0
