"""`corruptor stats`: tables and PNG plots of sources, ops, severities and failures."""
from __future__ import annotations

import json
from pathlib import Path

from corruptor.cli.main import UsageError


def register(sub):
    p = sub.add_parser("stats", help="tables and plots of a built dataset's manifests")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--plots", type=Path, default=None, help="folder for PNG plots (default DIR/stats)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from corruptor.build.stats import ManifestError, collect, format_table, plot
    from maa_format.paths import UnsafePathError

    try:
        st = collect(args.dir)
    except (FileNotFoundError, ManifestError, UnsafePathError) as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(st.to_dict(), indent=2) if args.json else format_table(st))
    if not args.no_plots:
        written = plot(st, args.plots or args.dir / "stats")
        if not args.json:
            print("\nplots: " + ", ".join(str(p) for p in written))
    return 0
