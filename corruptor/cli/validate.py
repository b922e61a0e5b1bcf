"""`corruptor validate`: check a built dataset; non-zero exit with a report on any fault."""
from __future__ import annotations

import json
from pathlib import Path

from corruptor.cli.main import UsageError


def register(sub):
    p = sub.add_parser("validate", help="check shards, manifests and counts of a built dataset")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--no-decode", action="store_true", help="skip decoding images (faster)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from corruptor.build.validate import validate

    try:
        report = validate(args.dir, decode=not args.no_decode)
    except (TypeError, AttributeError, KeyError) as exc:
        # A field of the right name but the wrong type (shards: 5, counts: "x"): the dataset is
        # malformed; say so in one line (the schema check of dataset.json reports each field).
        raise UsageError(f"{args.dir}/dataset.json is malformed ({type(exc).__name__}: {exc})") from None
    if args.json:
        print(json.dumps({"root": str(report.root), "ok": report.ok, "shards": report.shards,
                          "samples": report.samples, "errors": report.errors}, indent=2))
    else:
        print(report.format())
    return 0 if report.ok else 1
